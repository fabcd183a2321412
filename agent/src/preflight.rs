//! Preflight: before the first engine write of a cycle, check what the plan needs and would create —
//! every `external` network and volume exists, every outside container a new container names
//! (`volumes_from`, and `network_mode`/`pid`/`ipc: container:NAME`, which must also be running) exists,
//! and no network, volume or container name berth would create is taken by an object it does not own.
//! [`check`] is pure over an [`Inventory`] of engine names; a failure means nothing is touched.

use crate::model::{ContainerSpec, DesiredState, MountKind};
use crate::plan::{ContainerStep, Plan};
use std::collections::{BTreeMap, BTreeSet};

/// Names on the engine, with the `io.berth.agent` label of each object (`None`: not berth's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// A name may appear more than once for networks (the engine allows duplicates).
    pub networks: Vec<(String, Option<String>)>,
    pub volumes: Vec<(String, Option<String>)>,
    pub containers: Vec<(String, Option<String>)>,
    /// Every container with its id and state, for `container:NAME` references (by name or id prefix).
    pub container_states: Vec<ContainerPresence>,
}

/// One container on the engine, as a reference to it by name or id finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPresence {
    pub id: String,
    /// Without the leading `/`.
    pub names: Vec<String>,
    /// The engine's state word: `running`, `paused`, `exited`, `created`, `restarting`, ...
    pub state: String,
}

impl ContainerPresence {
    /// Whether the engine lets a new container join its namespaces: it refuses one that is not running
    /// ("cannot join network of a non running container") or is restarting; a paused one still has them.
    fn joinable(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("stack {stack}, service {service}: external network {name} does not exist")]
    MissingNetwork {
        stack: String,
        service: String,
        name: String,
    },
    #[error("stack {stack}, service {service}: external volume {name} does not exist")]
    MissingVolume {
        stack: String,
        service: String,
        name: String,
    },
    #[error("stack {stack}: {kind} {name} exists and is not berth's (agent {agent}); remove or rename it, or declare it external")]
    Taken {
        stack: String,
        kind: &'static str,
        name: String,
        /// Whose label it carries: another agent id, or `none`.
        agent: String,
    },
    #[error("stack {stack}, service {service}: {key} container {name} does not exist")]
    MissingContainer {
        stack: String,
        service: String,
        /// `volumes_from`, `network_mode`, `pid` or `ipc`.
        key: &'static str,
        name: String,
    },
    #[error("stack {stack}, service {service}: {key} container {name} is removed by this apply")]
    RemovedContainer {
        stack: String,
        service: String,
        key: &'static str,
        name: String,
    },
    #[error("stack {stack}, service {service}: {key} container {name} is not running ({state}); the engine joins only a running container's namespace")]
    StoppedContainer {
        stack: String,
        service: String,
        key: &'static str,
        name: String,
        state: String,
    },
    #[error("stack {stack}, service {service}: network name {name} is held by {count} networks; remove the extra ones")]
    Ambiguous {
        stack: String,
        service: String,
        name: String,
        count: usize,
    },
}

/// Engine networks every container may name without declaring them.
const BUILTIN_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

/// Everything wrong with applying `plan` for `desired` to an engine holding `inv`, as agent `agent_id`.
pub fn check(
    desired: &DesiredState,
    plan: &Plan,
    inv: &Inventory,
    agent_id: &str,
) -> Vec<PreflightError> {
    let networks = owners(&inv.networks);
    let volumes = owners(&inv.volumes);
    let containers = owners(&inv.containers);
    // Objects the plan creates: the name must be free, or berth's own.
    let mut problems = taken_names(plan, agent_id, &networks, &volumes, &containers);
    let creating = creating(plan);
    // External objects the new containers use must exist.
    problems.extend(outside_containers(desired, plan, inv, &creating));
    problems.extend(missing_externals(desired, &creating, &networks, &volumes));
    problems
}

/// Each name on the engine with the `io.berth.agent` label of every object holding it.
type Owners = BTreeMap<String, Vec<Option<String>>>;

/// Problems already named once: a kind (`ambiguous`, `network`, `volume`) and a name.
type Seen = BTreeSet<(&'static str, String)>;

/// The [`Owners`] of one list of the inventory.
fn owners(list: &[(String, Option<String>)]) -> Owners {
    let mut m: Owners = BTreeMap::new();
    for (name, agent) in list {
        m.entry(name.clone()).or_default().push(agent.clone());
    }
    m
}

/// The networks, volumes and containers `plan` creates whose name an object not `agent_id`'s holds.
fn taken_names(
    plan: &Plan,
    agent_id: &str,
    networks: &Owners,
    volumes: &Owners,
    containers: &Owners,
) -> Vec<PreflightError> {
    let mut problems = Vec::new();
    let mut taken = |stack: &str, kind: &'static str, name: &str, on_engine: &Owners| {
        if let Some(foreign) = on_engine
            .get(name)
            .into_iter()
            .flatten()
            .find(|a| a.as_deref() != Some(agent_id))
        {
            problems.push(PreflightError::Taken {
                stack: stack.to_string(),
                kind,
                name: name.to_string(),
                agent: foreign.clone().unwrap_or_else(|| "none".into()),
            });
        }
    };
    for n in &plan.create_networks {
        taken(&n.stack, "network", &n.name, networks);
    }
    for v in &plan.create_volumes {
        taken(&v.stack, "volume", &v.name, volumes);
    }
    for step in plan.waves.iter().flatten() {
        if let ContainerStep::Create { spec } = step {
            taken(&spec.stack, "container", &spec.name, containers);
        }
    }
    problems
}

/// The containers `plan` creates or recreates.
fn creating(plan: &Plan) -> Vec<&ContainerSpec> {
    plan.waves
        .iter()
        .flatten()
        .filter_map(|step| match step {
            ContainerStep::Create { spec } => Some(spec),
            ContainerStep::Recreate { spec, .. } => Some(spec),
            _ => None,
        })
        .collect()
}

/// The networks and volumes `creating` use that neither the desired state declares nor the engine
/// has, and network names several networks hold; each named once.
fn missing_externals(
    desired: &DesiredState,
    creating: &[&ContainerSpec],
    networks: &Owners,
    volumes: &Owners,
) -> Vec<PreflightError> {
    let declared_networks: BTreeSet<&str> = desired.networks().map(|n| n.name.as_str()).collect();
    let declared_volumes: BTreeSet<&str> = desired.volumes().map(|v| v.name.as_str()).collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for spec in creating {
        missing_networks(spec, &declared_networks, networks, &mut seen, &mut problems);
        missing_volumes(spec, &declared_volumes, volumes, &mut seen, &mut problems);
    }
    problems
}

/// The networks of `spec` (and of its `network_mode`) that are ambiguous, or external and missing.
fn missing_networks(
    spec: &ContainerSpec,
    declared: &BTreeSet<&str>,
    networks: &Owners,
    seen: &mut Seen,
    problems: &mut Vec<PreflightError>,
) {
    let mode_network = spec
        .network_mode
        .as_deref()
        .filter(|m| !m.starts_with("container:") && !m.starts_with("service:") && !m.is_empty());
    let nets = spec
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .chain(mode_network);
    for name in nets {
        if BUILTIN_NETWORKS.contains(&name) {
            continue;
        }
        let count = networks.get(name).map_or(0, Vec::len);
        if count > 1 && seen.insert(("ambiguous", name.to_string())) {
            problems.push(PreflightError::Ambiguous {
                stack: spec.stack.clone(),
                service: spec.service.clone(),
                name: name.to_string(),
                count,
            });
        }
        if declared.contains(name) {
            continue;
        }
        if count == 0 && seen.insert(("network", name.to_string())) {
            problems.push(PreflightError::MissingNetwork {
                stack: spec.stack.clone(),
                service: spec.service.clone(),
                name: name.to_string(),
            });
        }
    }
}

/// The named volumes `spec` mounts that are external and missing.
fn missing_volumes(
    spec: &ContainerSpec,
    declared: &BTreeSet<&str>,
    volumes: &Owners,
    seen: &mut Seen,
    problems: &mut Vec<PreflightError>,
) {
    for m in spec.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
        let name = m.source.as_str();
        // An empty source is an anonymous volume: the engine makes it.
        if name.is_empty() || declared.contains(name) {
            continue;
        }
        if !volumes.contains_key(name) && seen.insert(("volume", name.to_string())) {
            problems.push(PreflightError::MissingVolume {
                stack: spec.stack.clone(),
                service: spec.service.clone(),
                name: name.to_string(),
            });
        }
    }
}

/// The containers outside the desired state that `creating` name must exist on the engine (and not be
/// removed by `plan`); one whose namespace is joined must also run. A name the desired state gives a
/// container is the plan's own to make or keep. `external_links` are not checked: the engine takes an
/// endpoint link to a container that does not exist, and the name resolves once it does.
fn outside_containers(
    desired: &DesiredState,
    plan: &Plan,
    inv: &Inventory,
    creating: &[&ContainerSpec],
) -> Vec<PreflightError> {
    let ours: BTreeSet<&str> = desired.containers().map(|c| c.name.as_str()).collect();
    let removed: BTreeSet<&str> = plan
        .remove_containers
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    // The engine finds a container by its name, or by its id or a prefix of it.
    let find = |reference: &str| {
        inv.container_states.iter().find(|c| {
            c.names.iter().any(|n| n == reference)
                || (!reference.is_empty() && c.id.starts_with(reference))
        })
    };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for spec in creating {
        for (key, name) in container_references(spec) {
            let Some(name) = name.filter(|n| !ours.contains(n) && !n.starts_with("service:"))
            else {
                continue;
            };
            // Once per service, not per replica.
            if !seen.insert((spec.stack.as_str(), spec.service.as_str(), key, name)) {
                continue;
            }
            let (stack, service) = (spec.stack.clone(), spec.service.clone());
            let name_s = name.to_string();
            match find(name) {
                None => problems.push(PreflightError::MissingContainer {
                    stack,
                    service,
                    key,
                    name: name_s,
                }),
                Some(c) if removed.contains(c.id.as_str()) => {
                    problems.push(PreflightError::RemovedContainer {
                        stack,
                        service,
                        key,
                        name: name_s,
                    })
                }
                Some(c) if key != "volumes_from" && !c.joinable() => {
                    problems.push(PreflightError::StoppedContainer {
                        stack,
                        service,
                        key,
                        name: name_s,
                        state: c.state.clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    problems
}

/// The containers `spec` names, each with its key: `volumes_from` (without `:ro`/`:rw`), and
/// `network_mode`, `pid` and `ipc` (`Some` only for `container:NAME`).
fn container_references(
    spec: &ContainerSpec,
) -> impl Iterator<Item = (&'static str, Option<&str>)> + '_ {
    let mounted = spec.volumes_from.iter().map(|v| {
        let name = v
            .strip_suffix(":ro")
            .or_else(|| v.strip_suffix(":rw"))
            .unwrap_or(v);
        ("volumes_from", Some(name))
    });
    let joined = [
        ("network_mode", &spec.network_mode),
        ("pid", &spec.pid),
        ("ipc", &spec.ipc),
    ]
    .into_iter()
    .map(|(key, mode)| {
        (
            key,
            mode.as_deref().and_then(|m| m.strip_prefix("container:")),
        )
    });
    mounted.chain(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ContainerSpec, MountSpec, NetworkAttachment, NetworkSpec, StackSpec, VolumeSpec,
    };

    const ME: &str = "edge-01";

    fn container(name: &str, nets: &[&str], vols: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: format!("s-{name}-1"),
            stack: "s".into(),
            service: name.into(),
            replica: 1,
            image: "img".into(),
            networks: nets
                .iter()
                .map(|n| NetworkAttachment {
                    name: n.to_string(),
                    aliases: vec![],
                    ipv4_address: None,
                    ipv6_address: None,
                    priority: 0,
                    mac_address: None,
                    links: vec![],
                })
                .collect(),
            mounts: vols
                .iter()
                .map(|v| MountSpec::new(MountKind::Volume, *v, "/data", false))
                .collect(),
            ..Default::default()
        }
    }

    fn desired(containers: Vec<ContainerSpec>) -> DesiredState {
        let stack = StackSpec {
            name: "s".into(),
            dir: ".".into(),
            containers,
            networks: vec![NetworkSpec {
                name: "s_default".into(),
                stack: "s".into(),
                ..Default::default()
            }],
            volumes: vec![VolumeSpec {
                name: "s_data".into(),
                stack: "s".into(),
                ..Default::default()
            }],
        };
        DesiredState {
            stacks: [("s".to_string(), stack)].into(),
            ..Default::default()
        }
    }

    fn plan_for(d: &DesiredState) -> Plan {
        crate::plan::plan(d, &Default::default())
    }

    fn mine(name: &str) -> (String, Option<String>) {
        (name.into(), Some(ME.into()))
    }

    #[test]
    fn a_clean_engine_passes() {
        let d = desired(vec![container("web", &["s_default"], &["s_data"])]);
        assert_eq!(check(&d, &plan_for(&d), &Inventory::default(), ME), vec![]);
    }

    #[test]
    fn missing_external_network_and_volume_are_named() {
        let d = desired(vec![container(
            "web",
            &["s_default", "shared"],
            &["backup"],
        )]);
        let got = check(&d, &plan_for(&d), &Inventory::default(), ME);
        assert_eq!(
            got.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "stack s, service web: external network shared does not exist",
                "stack s, service web: external volume backup does not exist",
            ]
        );
        let inv = Inventory {
            networks: vec![("shared".into(), None)],
            volumes: vec![("backup".into(), None)],
            ..Default::default()
        };
        assert_eq!(check(&d, &plan_for(&d), &inv, ME), vec![]);
    }

    #[test]
    fn names_taken_by_objects_berth_does_not_own_are_refused() {
        let d = desired(vec![container("web", &["s_default"], &["s_data"])]);
        let inv = Inventory {
            networks: vec![("s_default".into(), None)],
            volumes: vec![("s_data".into(), Some("other-box".into()))],
            containers: vec![("s-web-1".into(), None)],
            ..Default::default()
        };
        let got: Vec<String> = check(&d, &plan_for(&d), &inv, ME)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].contains("network s_default exists and is not berth's (agent none)"));
        assert!(got[1].contains("volume s_data exists and is not berth's (agent other-box)"));
        assert!(got[2].contains("container s-web-1 exists"));
    }

    #[test]
    fn own_objects_and_builtin_networks_pass() {
        let mut web = container("web", &["s_default", "bridge"], &["s_data", ""]);
        web.network_mode = None;
        let mut host = container("agent", &[], &[]);
        host.network_mode = Some("host".into());
        let d = desired(vec![web, host]);
        let inv = Inventory {
            networks: vec![mine("s_default")],
            volumes: vec![mine("s_data")],
            containers: vec![],
            ..Default::default()
        };
        assert_eq!(check(&d, &plan_for(&d), &inv, ME), vec![]);
    }

    #[test]
    fn a_network_name_held_twice_is_ambiguous() {
        let d = desired(vec![container("web", &["s_default"], &[])]);
        let inv = Inventory {
            networks: vec![mine("s_default"), ("s_default".into(), None)],
            ..Default::default()
        };
        let mut p = plan_for(&d);
        // berth owns one of them, so the plan would not create it; the foreign twin still breaks attaching.
        p.create_networks.clear();
        let got = check(&d, &p, &inv, ME);
        assert_eq!(
            got.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["stack s, service web: network name s_default is held by 2 networks; remove the extra ones"]
        );
    }
    fn on_engine(id: &str, name: &str, state: &str) -> ContainerPresence {
        ContainerPresence {
            id: id.into(),
            names: vec![name.into()],
            state: state.into(),
        }
    }

    fn errors(d: &DesiredState, inv: &Inventory) -> Vec<String> {
        check(d, &plan_for(d), inv, ME)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn volumes_from_an_outside_container_needs_it_to_exist_running_or_not() {
        let mut web = container("web", &["s_default"], &[]);
        web.volumes_from = vec!["legacy-data:ro".into(), "other".into()];
        let d = desired(vec![web]);
        assert_eq!(
            errors(&d, &Inventory::default()),
            vec![
                "stack s, service web: volumes_from container legacy-data does not exist",
                "stack s, service web: volumes_from container other does not exist",
            ]
        );
        // The engine mounts the volumes of a stopped container; the id (or a prefix of it) works too.
        let inv = Inventory {
            container_states: vec![
                on_engine("aaa111", "legacy-data", "exited"),
                on_engine("bbb222", "x", "created"),
            ],
            ..Default::default()
        };
        let mut web = container("web", &["s_default"], &[]);
        web.volumes_from = vec!["legacy-data:ro".into(), "bbb".into()];
        let d = desired(vec![web]);
        assert_eq!(errors(&d, &inv), Vec::<String>::new());
    }

    #[test]
    fn each_service_is_named_once_whatever_its_replicas_and_stack() {
        let mut web = container("web", &["s_default"], &[]);
        web.volumes_from = vec!["legacy".into()];
        let mut web2 = web.clone();
        web2.name = "s-web-2".into();
        web2.replica = 2;
        let mut other_stack = web.clone();
        other_stack.stack = "t".into();
        other_stack.name = "t-web-1".into();
        let d = desired(vec![web, web2, other_stack]);
        assert_eq!(
            errors(&d, &Inventory::default()),
            vec![
                "stack s, service web: volumes_from container legacy does not exist",
                "stack t, service web: volumes_from container legacy does not exist",
            ]
        );
    }

    #[test]
    fn namespaces_of_an_outside_container_need_it_running() {
        for key in ["network_mode", "pid", "ipc"] {
            let mut web = container("web", &[], &[]);
            let mode = Some("container:legacy".to_string());
            match key {
                "network_mode" => web.network_mode = mode,
                "pid" => web.pid = mode,
                _ => web.ipc = mode,
            }
            let d = desired(vec![web]);
            assert_eq!(
                errors(&d, &Inventory::default()),
                vec![format!(
                    "stack s, service web: {key} container legacy does not exist"
                )]
            );
            for state in ["exited", "created", "restarting"] {
                let inv = Inventory {
                    container_states: vec![on_engine("aaa111", "legacy", state)],
                    ..Default::default()
                };
                assert_eq!(
                    errors(&d, &inv),
                    vec![format!("stack s, service web: {key} container legacy is not running ({state}); the engine joins only a running container's namespace")]
                );
            }
            for state in ["running", "paused"] {
                let inv = Inventory {
                    container_states: vec![on_engine("aaa111", "legacy", state)],
                    ..Default::default()
                };
                assert_eq!(errors(&d, &inv), Vec::<String>::new(), "{key} {state}");
            }
        }
    }

    #[test]
    fn containers_of_the_desired_state_are_the_plans_own() {
        // `service:X` is rendered to X's first container, which this plan makes.
        let mut web = container("web", &[], &[]);
        web.network_mode = Some("container:s-db-1".into());
        web.pid = Some("container:s-db-1".into());
        web.volumes_from = vec!["s-db-1:rw".into()];
        let db = container("db", &["s_default"], &[]);
        let d = desired(vec![web, db]);
        assert_eq!(errors(&d, &Inventory::default()), Vec::<String>::new());
    }

    #[test]
    fn external_links_to_a_missing_container_pass() {
        // The engine takes an endpoint link to a container that does not exist (checked on a real
        // engine); the alias resolves once that container runs on the network.
        let mut web = container("web", &["s_default"], &[]);
        web.networks[0].links = vec!["legacy:db".into()];
        let d = desired(vec![web]);
        assert_eq!(errors(&d, &Inventory::default()), Vec::<String>::new());
    }

    #[test]
    fn a_container_this_apply_removes_cannot_be_named() {
        let mut web = container("web", &["s_default"], &[]);
        web.volumes_from = vec!["s-old-1".into()];
        let d = desired(vec![web]);
        let inv = Inventory {
            container_states: vec![on_engine("ccc333", "s-old-1", "running")],
            ..Default::default()
        };
        let mut p = plan_for(&d);
        p.remove_containers.push(crate::model::ActualContainer {
            id: "ccc333".into(),
            name: "s-old-1".into(),
            stack: "s".into(),
            service: "old".into(),
            replica: 1,
            spec_hash: "h".into(),
            image_id: String::new(),
            running: true,
            exit_code: None,
            state: "running".into(),
            finished: false,
        });
        let got: Vec<String> = check(&d, &p, &inv, ME)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec!["stack s, service web: volumes_from container s-old-1 is removed by this apply"]
        );
    }
}

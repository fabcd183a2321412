//! Properties of [`plan`] over arbitrary desired and actual states (a few stacks, services, replicas,
//! `depends_on` and `network_mode: service:` between them, networks, volumes, moved image tags, another
//! agent's containers), checked with a small pure model of what each step does to the engine.

use super::*;
use proptest::prelude::*;

/// What the engine looks like after every step of `p` ran and succeeded: a small pure model. Created
/// containers get fresh ids and the image id their image has; a one-shot job runs to completion (exits
/// 0), anything else keeps running.
fn run_model(a: &ActualState, p: &Plan) -> Result<ActualState, String> {
    let mut a = a.clone();
    let mut next = 0;
    let mut made = |spec: &ContainerSpec, images: &BTreeMap<String, String>| {
        next += 1;
        let mut c = ActualContainer {
            id: format!("new{next}"),
            name: spec.name.clone(),
            stack: spec.stack.clone(),
            service: spec.service.clone(),
            replica: spec.replica,
            spec_hash: spec.spec_hash(),
            image_id: images.get(&spec.image).cloned().unwrap_or_default(),
            running: true,
            exit_code: None,
            state: "running".into(),
            finished: false,
        };
        ran(spec, &mut c);
        c
    };
    for n in &p.create_networks {
        a.networks.push(ActualObject {
            name: n.name.clone(),
            stack: n.stack.clone(),
        });
    }
    for v in &p.create_volumes {
        a.volumes.push(ActualObject {
            name: v.name.clone(),
            stack: v.stack.clone(),
        });
    }
    for c in &p.remove_containers {
        a.containers.retain(|x| x.id != c.id);
    }
    for step in p.waves.iter().flatten() {
        match step {
            ContainerStep::Create { spec } => {
                let c = made(spec, &a.images);
                a.containers.push(c);
            }
            ContainerStep::Recreate { spec, old_id, .. } => {
                let before = a.containers.len();
                a.containers.retain(|x| &x.id != old_id);
                if a.containers.len() == before {
                    return Err(format!("recreate of {old_id}, which does not exist"));
                }
                let c = made(spec, &a.images);
                a.containers.push(c);
            }
            ContainerStep::Start { spec, id } | ContainerStep::Restart { spec, id } => {
                let c = a
                    .containers
                    .iter_mut()
                    .find(|x| &x.id == id)
                    .ok_or_else(|| format!("{} of {id}, which does not exist", step.verb()))?;
                ran(spec, c);
            }
        }
    }
    for n in &p.remove_networks {
        a.networks.retain(|x| &x.name != n);
    }
    Ok(a)
}

/// Whether the engine (as the model left it) is what `d` describes, judged without [`plan`]: every desired
/// container exists under its name with its spec hash and its image's current id (where known), running,
/// or exited 0 for a one-shot job; no other container is owned; the owned networks are the desired ones;
/// every desired volume exists.
fn matches_desired(d: &DesiredState, a: &ActualState) -> Result<(), String> {
    let mut have: BTreeMap<&str, &ActualContainer> = BTreeMap::new();
    for c in &a.containers {
        if have.insert(c.name.as_str(), c).is_some() {
            return Err(format!("two containers named {}", c.name));
        }
    }
    for spec in d.containers() {
        let c = have
            .remove(spec.name.as_str())
            .ok_or_else(|| format!("{} is missing", spec.name))?;
        if c.spec_hash != spec.spec_hash() {
            return Err(format!("{} has a stale spec hash", spec.name));
        }
        let image = a.images.get(&spec.image);
        if !c.image_id.is_empty() && image.is_some_and(|id| *id != c.image_id) {
            return Err(format!(
                "{} runs an image its tag no longer names",
                spec.name
            ));
        }
        let done = c.running || (spec.run_once && c.exit_code == Some(0));
        if !done {
            return Err(format!("{} is {}", spec.name, c.state));
        }
    }
    if let Some(name) = have.keys().next() {
        return Err(format!("{name} is owned but not desired"));
    }
    let want: BTreeSet<&str> = d.networks().map(|n| n.name.as_str()).collect();
    let got: BTreeSet<&str> = a.networks.iter().map(|n| n.name.as_str()).collect();
    if want != got {
        return Err(format!("networks {got:?}, desired {want:?}"));
    }
    let vols: BTreeSet<&str> = a.volumes.iter().map(|v| v.name.as_str()).collect();
    if let Some(v) = d.volumes().find(|v| !vols.contains(v.name.as_str())) {
        return Err(format!("volume {} is missing", v.name));
    }
    Ok(())
}

/// The container after it was (re)started: a job exits 0, anything else runs.
fn ran(spec: &ContainerSpec, c: &mut ActualContainer) {
    if spec.run_once {
        c.running = false;
        c.exit_code = Some(0);
        c.state = "exited".into();
    } else {
        c.running = true;
        c.exit_code = None;
        c.state = "running".into();
    }
}

const STACKS: [&str; 3] = ["s0", "s1", "s2"];
const SERVICES: [&str; 4] = ["a", "b", "c", "d"];
const IMAGES: [&str; 2] = ["img-x", "img-y"];
const NETWORKS: [&str; 3] = ["default", "front", "back"];
const VOLUMES: [&str; 2] = ["data", "logs"];

/// One service of an arbitrary desired state.
#[derive(Debug, Clone)]
struct ServiceGen {
    present: bool,
    replicas: u32,
    image: usize,
    env: u8,
    job: bool,
    /// For each earlier service of the stack: none, `depends_on` (restart false/true), or
    /// `network_mode: service:` it.
    deps: Vec<u8>,
}

#[derive(Debug, Clone)]
struct StackGen {
    present: bool,
    services: Vec<ServiceGen>,
    networks: Vec<bool>,
    volumes: Vec<bool>,
}

fn service_gen() -> impl Strategy<Value = ServiceGen> {
    (
        any::<bool>(),
        1u32..=3,
        0..IMAGES.len(),
        0u8..3,
        prop::bool::weighted(0.2),
        prop::collection::vec(
            prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
            SERVICES.len(),
        ),
    )
        .prop_map(|(present, replicas, image, env, job, deps)| ServiceGen {
            present,
            replicas,
            image,
            env,
            job,
            deps,
        })
}

fn stack_gen() -> impl Strategy<Value = StackGen> {
    (
        prop::bool::weighted(0.8),
        prop::collection::vec(service_gen(), SERVICES.len()),
        prop::collection::vec(any::<bool>(), NETWORKS.len()),
        prop::collection::vec(any::<bool>(), VOLUMES.len()),
    )
        .prop_map(|(present, services, networks, volumes)| StackGen {
            present,
            services,
            networks,
            volumes,
        })
}

/// Specs of one service, given the first containers' specs of the earlier services of its stack.
fn build_service(
    stack: &str,
    i: usize,
    g: &ServiceGen,
    earlier: &BTreeMap<usize, ContainerSpec>,
) -> Vec<ContainerSpec> {
    let mut spec = svc(stack, SERVICES[i]).edit(|c| {
        c.image = IMAGES[g.image].into();
        c.run_once = g.job;
        if g.env > 0 {
            c.env = vec![format!("E={}", g.env)];
        }
    });
    for (j, peer) in earlier {
        spec = match g.deps[*j] {
            1 => spec.after(&peer.service),
            2 => spec.after_restart(&peer.service),
            3 if spec.network_mode.is_none() => spec.network_of(peer),
            _ => spec,
        };
    }
    (1..=g.replicas).map(|r| spec.clone().replica(r)).collect()
}

fn build_desired(stacks: &[StackGen]) -> DesiredState {
    let mut out = Vec::new();
    for (s, g) in STACKS.iter().zip(stacks) {
        if !g.present {
            continue;
        }
        let mut earlier = BTreeMap::new();
        let mut containers = Vec::new();
        for (i, sg) in g.services.iter().enumerate() {
            if !sg.present {
                continue;
            }
            let specs = build_service(s, i, sg, &earlier);
            earlier.insert(i, specs[0].clone());
            containers.extend(specs);
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut st = stack(s, containers);
        st.networks = NETWORKS
            .iter()
            .zip(&g.networks)
            .filter(|(_, on)| **on)
            .map(|(k, _)| network(s, k))
            .collect();
        st.volumes = VOLUMES
            .iter()
            .zip(&g.volumes)
            .filter(|(_, on)| **on)
            .map(|(k, _)| volume(s, k))
            .collect();
        out.push(st);
    }
    desired(out)
}

/// One container slot `<stack>-<service>-<replica>` of the engine.
#[derive(Debug, Clone)]
struct ContainerGen {
    /// 0: absent; 1: owned by this agent; 2: owned by another agent (observe leaves it out).
    owner: u8,
    /// Its spec hash is the desired one (when the name is desired), or a stale one.
    current_hash: bool,
    /// 0: the image id its image has now; 1: another image id; 2: unknown (empty).
    image: u8,
    running: bool,
    exit_code: Option<i64>,
    /// A copy left aside by an interrupted recreate (`<name>_berth-old`) exists too.
    aside: bool,
}

#[derive(Debug, Clone)]
struct EngineGen {
    /// `STACKS × SERVICES × 3 replicas`, row-major.
    containers: Vec<ContainerGen>,
    /// `STACKS × (NETWORKS + one no stack wants)`.
    networks: Vec<bool>,
    volumes: Vec<bool>,
    /// Image id of each of [`IMAGES`]: its usual one or a moved tag.
    moved: Vec<bool>,
}

fn container_gen() -> impl Strategy<Value = ContainerGen> {
    (
        prop_oneof![2 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)],
        prop::bool::weighted(0.7),
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop::bool::weighted(0.7),
        prop::option::of(0i64..3),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(owner, current_hash, image, running, exit_code, aside)| ContainerGen {
                owner,
                current_hash,
                image,
                running,
                exit_code: if running { None } else { exit_code },
                aside,
            },
        )
}

fn engine_gen() -> impl Strategy<Value = EngineGen> {
    let slots = STACKS.len() * SERVICES.len() * 3;
    (
        prop::collection::vec(container_gen(), slots),
        prop::collection::vec(any::<bool>(), STACKS.len() * (NETWORKS.len() + 1)),
        prop::collection::vec(any::<bool>(), STACKS.len() * VOLUMES.len()),
        prop::collection::vec(prop::bool::weighted(0.2), IMAGES.len()),
    )
        .prop_map(|(containers, networks, volumes, moved)| EngineGen {
            containers,
            networks,
            volumes,
            moved,
        })
}

/// What observe would return for this agent: only its own containers (the other agent's are on the
/// engine, not in the result), its networks and volumes, and the id of every image (all pulled).
fn build_actual(d: &DesiredState, g: &EngineGen) -> ActualState {
    let specs: BTreeMap<&str, &ContainerSpec> =
        d.containers().map(|c| (c.name.as_str(), c)).collect();
    let image_ids: BTreeMap<String, String> = IMAGES
        .iter()
        .zip(&g.moved)
        .map(|(i, moved)| {
            let id = if *moved {
                format!("sha256:{i}-moved")
            } else {
                image_id(i)
            };
            (i.to_string(), id)
        })
        .collect();
    let mut containers = Vec::new();
    let mut slot = 0;
    for s in STACKS {
        for (i, service) in SERVICES.iter().enumerate() {
            for replica in 1..=3u32 {
                let c = &g.containers[slot];
                slot += 1;
                if c.owner != 1 {
                    continue;
                }
                let name = format!("{s}-{service}-{replica}");
                let image = IMAGES[(slot + i) % IMAGES.len()].to_string();
                let (hash, image) = match specs.get(name.as_str()) {
                    Some(spec) if c.current_hash => (spec.spec_hash(), spec.image.clone()),
                    Some(spec) => ("stale".to_string(), spec.image.clone()),
                    None => ("stale".to_string(), image),
                };
                let image_id = match c.image {
                    0 => image_ids[&image].clone(),
                    1 => "sha256:old".to_string(),
                    _ => String::new(),
                };
                let container = ActualContainer {
                    id: format!("{name}#"),
                    name: name.clone(),
                    stack: s.into(),
                    service: service.to_string(),
                    replica,
                    spec_hash: hash,
                    image_id,
                    running: c.running,
                    exit_code: c.exit_code,
                    state: if c.running { "running" } else { "exited" }.into(),
                    finished: false,
                };
                if c.aside {
                    containers.push(ActualContainer {
                        id: format!("{name}#old"),
                        name: format!("{name}{}", crate::apply::OLD_SUFFIX),
                        running: false,
                        state: "exited".into(),
                        ..container.clone()
                    });
                }
                containers.push(container);
            }
        }
    }
    let (networks, volumes) = owned_objects(g);
    ActualState {
        containers,
        networks,
        volumes,
        images: image_ids,
    }
}

/// The networks (each stack's, and one no stack wants) and volumes the engine has for this agent.
fn owned_objects(g: &EngineGen) -> (Vec<ActualObject>, Vec<ActualObject>) {
    let mut networks = Vec::new();
    let mut volumes = Vec::new();
    for (k, s) in STACKS.iter().enumerate() {
        let keys = NETWORKS.iter().copied().chain(["unwanted"]);
        for (j, key) in keys.enumerate() {
            if g.networks[k * (NETWORKS.len() + 1) + j] {
                networks.push((network(s, key).name, s.to_string()));
            }
        }
        for (j, key) in VOLUMES.iter().enumerate() {
            if g.volumes[k * VOLUMES.len() + j] {
                volumes.push((volume(s, key).name, s.to_string()));
            }
        }
    }
    let as_objects = |specs: Vec<(String, String)>| {
        specs
            .into_iter()
            .map(|(name, stack)| ActualObject { name, stack })
            .collect()
    };
    (as_objects(networks), as_objects(volumes))
}

/// Ids of the containers of another agent in `g` (what observe left out).
fn foreign_ids(g: &EngineGen) -> Vec<String> {
    let mut out = Vec::new();
    let mut slot = 0;
    for s in STACKS {
        for service in SERVICES {
            for replica in 1..=3 {
                if g.containers[slot].owner == 2 {
                    out.push(format!("{s}-{service}-{replica}#"));
                }
                slot += 1;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Running the plan (in the model) converges: the engine is what the desired state describes, and
    /// planning again finds nothing to do.
    #[test]
    fn running_the_plan_converges(
        stacks in prop::collection::vec(stack_gen(), STACKS.len()),
        engine in engine_gen(),
    ) {
        let d = build_desired(&stacks);
        let a = build_actual(&d, &engine);
        let p = plan(&d, &a);
        prop_assert!(p.missing_images.is_empty(), "{:#?}", lines(&p));
        let after = run_model(&a, &p).map_err(TestCaseError::fail)?;
        if let Err(e) = matches_desired(&d, &after) {
            prop_assert!(false, "{e} after the plan\n{:#?}", lines(&p));
        }
        let again = plan(&d, &after);
        prop_assert!(
            again.is_empty(),
            "the plan\n{:#?}\nleaves\n{:#?}",
            lines(&p),
            lines(&again)
        );
    }

    /// Plan names only what it was given (never another agent's containers, which observe left out),
    /// and every step comes in a later wave than the steps of the services it depends on.
    #[test]
    fn steps_name_only_given_objects_and_follow_dependencies(
        stacks in prop::collection::vec(stack_gen(), STACKS.len()),
        engine in engine_gen(),
    ) {
        let d = build_desired(&stacks);
        let a = build_actual(&d, &engine);
        let p = plan(&d, &a);
        names_only_what_it_was_given(&d, &a, &p).map_err(TestCaseError::fail)?;
        let text = lines(&p).join("\n");
        for id in foreign_ids(&engine) {
            prop_assert!(!text.contains(&format!("({id})")), "{id} in\n{text}");
        }
        let wave_of: BTreeMap<(&str, &str), usize> = p
            .waves
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| {
                wave.iter()
                    .map(move |s| ((s.spec().stack.as_str(), s.spec().service.as_str()), w))
            })
            .collect();
        for (w, wave) in p.waves.iter().enumerate() {
            for step in wave {
                let spec = step.spec();
                for dep in spec.dependency_names() {
                    if let Some(dw) = wave_of.get(&(spec.stack.as_str(), dep)) {
                        prop_assert!(
                            *dw < w,
                            "{} (wave {w}) depends on {dep} (wave {dw})\n{text}",
                            spec.name
                        );
                    }
                }
            }
        }
    }
}

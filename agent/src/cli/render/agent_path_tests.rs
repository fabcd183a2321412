//! `berth render --repo` renders a box as the agent following it does: one options builder
//! ([`crate::reconcile::box_render_options`]) and one entry point ([`crate::reconcile::render_tree`]).

use super::fleet::{render_box, FleetFile};
use crate::render::DirTree;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn a_box_renders_as_its_agent_renders_it() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().canonicalize().unwrap();
    // The agent checks the repository out at <state_dir>/repo: the fleet repository is there.
    let root = state_dir.join("repo");
    let dir = root.join("hosts/edge-01");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  app:\n    image: busybox\n    environment:\n      SITE: ${BERTH_FACT_SITE}\n      BOX: ${BERTH_AGENT_ID}\n      ARCH: ${BERTH_ARCH}\n      PATH_SET: ${PATH:+yes}\n    volumes:\n      - ./data:/data\n",
    )
    .unwrap();
    let config = format!(
        "agent_id: edge-01\nstate_dir: {}\nsource:\n  url: file:///srv/fleet.git\n  path: hosts/edge-01\nfacts:\n  site: berlin\n",
        state_dir.display()
    );
    let settings = crate::config::parse(&config).unwrap();
    let tree = DirTree::new(&root);

    let agent =
        crate::reconcile::render_tree(&tree, &crate::reconcile::render_options(&settings)).unwrap();
    let fleet: FleetFile =
        serde_yaml::from_str("facts:\n  hosts/edge-01: {site: berlin}\n").unwrap();
    let cli = render_box(
        &tree,
        &root,
        Path::new("hosts/edge-01"),
        &fleet,
        &BTreeMap::new(),
        None,
        &crate::render::secret_values::environment_names(),
    )
    .0
    .unwrap();

    let agent = serde_json::to_value(&agent).unwrap();
    assert_eq!(agent, serde_json::to_value(&cli).unwrap());
    let env = &agent["stacks"]["edge-01"]["containers"][0]["env"];
    for want in ["SITE=berlin", "BOX=edge-01", "PATH_SET=yes"] {
        assert!(
            env.as_array().unwrap().iter().any(|e| e == want),
            "{want} not in {env}"
        );
    }
}

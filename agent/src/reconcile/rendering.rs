//! How a box renders a commit: the render options from its settings (path, checkout, facts, SOPS), the
//! root stack name, and rendering the followed path of a tree (missing path = error, not empty).

use crate::config::Settings;
use crate::model::DesiredState;
use crate::render::{self, RenderError, RenderOptions, Tree};

/// Render the followed path of a tree; a followed path missing from the commit is an error, not an
/// empty desired state (which would remove every container).
pub fn render_tree(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let (result, warnings) = render_tree_warned(tree, opts);
    for w in &warnings {
        tracing::warn!(warning = %w, "render");
    }
    result
}

/// [`render_tree`], and the render's warnings (see [`render::render_warned`]) instead of logging them.
pub fn render_tree_warned(
    tree: &dyn Tree,
    opts: &RenderOptions,
) -> (Result<DesiredState, RenderError>, Vec<render::Problem>) {
    let exists = opts.path.as_os_str() == "."
        || matches!(tree.kind(&opts.path), Ok(Some(render::EntryKind::Dir)));
    if !exists {
        let problems = vec![render::Problem {
            file: None,
            line: None,
            column: None,
            stack: None,
            service: None,
            message: format!(
                "source.path {} is not a directory in this commit",
                opts.path.display()
            ),
        }];
        return (Err(RenderError { problems }), Vec::new());
    }
    render::render_warned(tree, opts)
}

/// How this box renders a commit: its followed path, its checkout, and its variables (facts and the box's
/// own under the agent's environment, see [`crate::render::facts::scope`]).
pub fn render_options(settings: &Settings) -> RenderOptions {
    let mut opts = box_render_options(
        &settings.source.path,
        settings.state_dir.join("repo"),
        &crate::render::facts::BoxIdentity::local(&settings.agent_id),
        &settings.facts,
        sops_options(settings),
    );
    opts.secret_vars = settings.secret_vars();
    opts
}

/// How this box decrypts SOPS files: its `secrets.age_key_file` (an encrypted file without a key is a
/// render error) and its runtime directory for decrypted bind-mounted files.
pub fn sops_options(settings: &Settings) -> crate::render::sops::SopsOptions {
    crate::render::sops::SopsOptions {
        age_key_file: Some(settings.age_key_file.clone()),
        placeholders: false,
        runtime_dir: crate::render::sops::runtime::runtime_dir(&settings.agent_id),
    }
}

/// The options a box following `path` renders with, for the agent ([`render_options`]) and
/// `berth render --repo` alike: the root stack name from the path and the box's agent id, and the
/// variables from its identity, its facts and this process's environment (see
/// [`crate::render::facts::scope`]). Both then render with [`render_tree`].
pub fn box_render_options(
    path: &std::path::Path,
    checkout_dir: std::path::PathBuf,
    identity: &crate::render::facts::BoxIdentity,
    facts: &std::collections::BTreeMap<String, String>,
    sops: crate::render::sops::SopsOptions,
) -> RenderOptions {
    RenderOptions {
        path: path.to_path_buf(),
        checkout_dir,
        root_stack_name: root_stack_name_of(path, &identity.agent_id),
        env: crate::render::facts::scope(identity, facts, std::env::vars()),
        sops,
        // The process's environment; callers add the variables of secret facts.
        secret_vars: crate::render::secret_values::environment_names(),
    }
}

/// The stack name of the followed directory itself, when its compose file has no `name:`.
pub fn root_stack_name(settings: &Settings) -> String {
    root_stack_name_of(&settings.source.path, &settings.agent_id)
}

/// The root stack name of a box following `path` under `agent_id` (`berth render --repo` shares it).
pub fn root_stack_name_of(path: &std::path::Path, agent_id: &str) -> String {
    let base = match path.file_name() {
        Some(n) if path.as_os_str() != "." => n.to_string_lossy().to_string(),
        _ => agent_id.to_string(),
    };
    sanitize_stack_name(&base)
}

pub use crate::render::sanitize_stack_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_are_sanitized() {
        assert_eq!(sanitize_stack_name("Edge-01"), "edge-01");
        assert_eq!(sanitize_stack_name("edge.box"), "edge-box");
        assert_eq!(sanitize_stack_name("..."), "default");
    }
}

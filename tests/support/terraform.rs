//! Terraform for tests: a private copy of `infra/` per test (so no state or
//! `.terraform` lands in the repository), providers from the local mirror
//! named by `TF_PLUGIN_DIR` when set (else from the registry), and loud
//! failures when Terraform or the provider is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Terraform {
    pub bin: PathBuf,
    /// `TF_PLUGIN_DIR`: a provider mirror, for machines without the registry.
    pub plugin_dir: Option<PathBuf>,
    pub workdir: PathBuf,
}

fn find_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TERRAFORM") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("terraform"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Terraform is not on PATH: install Terraform >= 1.5 or set TERRAFORM to its path"
            )
        })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".terraform") || name == "terraform.tfstate" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

impl Terraform {
    /// A copy of `infra/`; `root` is the configuration to work in
    /// (`""` for the AWS root, `"localstack"` for the LocalStack one).
    pub fn new(root: &str) -> Terraform {
        let bin = find_binary();
        let plugin_dir = std::env::var_os("TF_PLUGIN_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if let Some(dir) = &plugin_dir {
            assert!(
                dir.join("registry.terraform.io/hashicorp/aws").is_dir(),
                "the hashicorp/aws provider is not in TF_PLUGIN_DIR={} (point it at a provider \
                 mirror, e.g. one made with `terraform providers mirror`)",
                dir.display()
            );
        }
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
        let copy = std::env::temp_dir().join(format!("tf-{}", uuid::Uuid::new_v4().simple()));
        copy_dir(&infra, &copy);
        Terraform {
            bin,
            plugin_dir,
            workdir: copy.join(root),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .current_dir(&self.workdir)
            // No CLI config file, no version check, no prompts: nothing
            // reaches for the network.
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .output()
            .expect("terraform runs")
    }

    /// Runs and asserts success, returning standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(
            o.status.success(),
            "terraform {args:?} failed:\n{out}\n{err}"
        );
        out
    }

    /// `terraform init`, from the mirror when `TF_PLUGIN_DIR` is set. Without
    /// it the registry must be reachable; the failure says so.
    pub fn init(&self) {
        match &self.plugin_dir {
            Some(dir) => {
                let plugin = format!("-plugin-dir={}", dir.display());
                self.ok(&["init", "-backend=false", "-no-color", &plugin]);
            }
            None => {
                let o = self.run(&["init", "-backend=false", "-no-color"]);
                assert!(
                    o.status.success(),
                    "terraform init failed without TF_PLUGIN_DIR (the registry must then be \
                     reachable; on a machine without it, set TF_PLUGIN_DIR to a provider mirror):\n{}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

impl Drop for Terraform {
    fn drop(&mut self) {
        if let Some(copy) = self.workdir.ancestors().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tf-"))
        }) {
            let _ = std::fs::remove_dir_all(copy);
        }
    }
}

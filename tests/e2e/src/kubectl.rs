//! kubectl against the test bench's API server, for tests that drive a cluster the way a
//! user does (apply manifests, read objects back).

use std::process::Command;

/// kpack's Image kind (`kpack.io/v1alpha2`) as a stand-in CRD: kpack itself cannot be installed
/// on the bench, so tests install its group, version, kind and status subresource and write
/// build results as kpack does. The reconciler's tests and the dashboard's read the same file.
pub const KPACK_STANDIN_CRD: &str = include_str!("../fixtures/kpack-image-crd.json");

/// kubectl from the test bench against its API server (`PERSYS_TEST_KUBECONFIG`).
pub struct Kubectl {
    bin: String,
    /// The admin kubeconfig.
    pub kubeconfig: String,
}

impl Kubectl {
    /// kubectl, or `None` (a failure under CI=true) when the bench is not running.
    pub fn from_env() -> Option<Self> {
        let kubeconfig = persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")?;
        let bin = persys_kit::testing::require_env("PERSYS_TEST_KUBECTL", "kubectl from scripts/tools/build")?;
        Some(Self { bin, kubeconfig })
    }

    /// Returns kubectl with `args`, on the bench's API server.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--kubeconfig").arg(&self.kubeconfig).arg("--request-timeout=30s").args(args);
        command
    }

    /// Runs kubectl with `stdin`, failing the test when it fails; returns its stdout.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies `objects` (one object, or a `List`) server-side as the tests' field manager.
    pub fn apply(&self, objects: &serde_json::Value) {
        self.run(&["apply", "--server-side", "--field-manager=persys-tests", "-f", "-"], Some(&objects.to_string()));
    }

    /// Runs kubectl with `-o json`.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&all, None)).unwrap()
    }

    /// Installs the CRDs the reconciler defines, as the Helm chart does, and waits until the
    /// API server serves every one of them.
    pub fn install_crds(&self) {
        let crds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/persys/crds/persys-crds.yaml");
        let crds = crds.to_str().expect("a UTF-8 path");
        let apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=persys-tests", "-f", crds];
        self.run(&apply, None);
        self.run(&["wait", "--for=condition=Established", "--timeout=60s", "-f", crds], None);
    }

    /// Installs [`KPACK_STANDIN_CRD`] and waits until the API server serves it.
    pub fn install_kpack_standin(&self) {
        let apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=persys-tests", "-f", "-"];
        self.run(&apply, Some(KPACK_STANDIN_CRD));
        self.run(&["wait", "--for=condition=Established", "--timeout=60s", "crd/images.kpack.io"], None);
    }
}

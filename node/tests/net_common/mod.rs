//! Shared by the multi-process mesh tests: provisioning a throwaway mesh in a temp folder,
//! node configs on 127.0.0.1, starting `sotto run` / `sotto ask` / `sotto status` as child
//! processes that are killed when the test ends (or fails), and the plaintext reference.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::Threshold;
use mesh_net::{self as net, PeerId};
use models::secure::{file_sha256, provision};
use models::{Engine, F32Engine, FixedWeights, Model};

pub(crate) const PROMPT: &str = "Once upon a time";

/// `$SOTTO_MODEL_DIR`, else `<workspace>/models/stories260K`. Panics (the test fails, never
/// skips) with the fix when the files are missing.
pub(crate) fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SOTTO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("models")
                .join("stories260K")
        });
    let (ck, tok) = Model::files(&dir);
    assert!(
        ck.is_file() && tok.is_file(),
        "model files missing in {}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)",
        dir.display()
    );
    dir
}

/// The plaintext f32 engine's greedy tokens and text for `prompt`.
pub(crate) fn plaintext(prompt: &str, steps: usize) -> (Vec<u32>, String) {
    let model = Model::load_dir(&model_dir()).expect("model loads");
    let tokens = model.tokenizer.encode(prompt, true, false);
    let mut e = F32Engine::new(Arc::clone(&model.checkpoint));
    for (pos, &t) in tokens.iter().enumerate() {
        e.forward(t, pos).expect("forward");
    }
    let mut ids = Vec::with_capacity(steps);
    let mut text = prompt.to_owned();
    let mut prev = *tokens.last().expect("BOS");
    let mut stopped = false;
    let mut pending = Vec::new();
    for step in 0..steps {
        let next = e.argmax();
        ids.push(next);
        if next == models::BOS {
            stopped = true;
        }
        if !stopped {
            pending.extend_from_slice(model.tokenizer.decode_piece(prev, next).expect("piece"));
            prev = next;
        }
        if step + 1 < steps {
            e.forward(next, tokens.len() + step).expect("forward");
        }
    }
    text.push_str(&String::from_utf8_lossy(&pending));
    (ids, text)
}

/// Kills the child when dropped, so a failing test leaves no process behind.
pub(crate) struct ChildGuard {
    pub(crate) child: Option<Child>,
    pub(crate) name: String,
    pub(crate) log: PathBuf,
}

impl ChildGuard {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, as a device losing power.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, at most `limit`.
    pub(crate) fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the node binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub(crate) fn sotto() -> Command {
    command(None)
}

/// `sotto`, inside network namespace `netns` if given.
pub(crate) fn command(netns: Option<&str>) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_sotto")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_sotto")),
    };
    c.env("SOTTO_MODEL_DIR", model_dir());
    c
}

/// One throwaway mesh: share files, keys and configs in a temp folder.
pub(crate) struct Mesh {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) th: Threshold,
    pub(crate) ports: Vec<u16>,
    pub(crate) peers: Vec<PeerId>,
    pub(crate) client_peer: PeerId,
    pub(crate) nodes: Vec<Option<ChildGuard>>,
    /// Extra `key = value` lines for every node.toml.
    pub(crate) extra: String,
    /// Run every process inside this network namespace (`ip netns exec`).
    pub(crate) netns: Option<String>,
}

impl Mesh {
    /// Creates every node's identity, provisions stories260K for `(n, t)` with their peer IDs
    /// as the roster, and writes the keys.
    pub(crate) fn new(n: usize, t: usize) -> Mesh {
        let dir = tempfile::tempdir().expect("temp dir");
        let th = Threshold::new(n, t).expect("valid (n, t)");
        net::write_psk(&dir.path().join("mesh.psk"), &net::generate_psk()).expect("psk");
        let peers: Vec<PeerId> = (1..=n)
            .map(|i| {
                net::load_or_generate_identity(&dir.path().join(format!("node-{i}.key")))
                    .expect("identity")
                    .public()
                    .to_peer_id()
            })
            .collect();
        provision_into(dir.path(), th, &peers, "");
        let client_peer = net::load_or_generate_identity(&dir.path().join("client.key"))
            .expect("client identity")
            .public()
            .to_peer_id();
        let ports = (0..n).map(|_| free_port()).collect();
        Mesh {
            dir,
            th,
            ports,
            peers,
            client_peer,
            nodes: (0..n).map(|_| None).collect(),
            extra: "round_timeout_ms = 5000\nrecovery_timeout_ms = 15000\n".to_owned(),
            netns: None,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn addr(&self, i: usize) -> String {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.ports[i - 1],
            self.peers[i - 1]
        )
    }

    /// node.toml of party `i` (1-based).
    pub(crate) fn config(&self, i: usize) -> String {
        let n = self.th.n();
        let statics: Vec<String> = (1..=n)
            .filter(|&j| j != i)
            .map(|j| format!("\"{}\"", self.addr(j)))
            .collect();
        let mut s = String::new();
        let _ = writeln!(s, "identity = \"node-{i}.key\"");
        let _ = writeln!(s, "share_file = \"party-{i}.share\"");
        let _ = writeln!(s, "psk_file = \"mesh.psk\"");
        let _ = writeln!(s, "listen = [\"/ip4/127.0.0.1/tcp/{}\"]", self.ports[i - 1]);
        let _ = writeln!(s, "static_peers = [{}]", statics.join(", "));
        // The devices come from the share file's roster; only the client is listed.
        let _ = writeln!(s, "clients = [\"{}\"]", self.client_peer);
        s.push_str(&self.extra);
        s
    }

    /// Writes party `i`'s config and starts `sotto run`.
    pub(crate) fn start(&mut self, i: usize) {
        self.start_with(i, |c| c);
    }

    /// Like [`Mesh::start`], with party `i`'s config changed by `edit` first.
    pub(crate) fn start_with(&mut self, i: usize, edit: impl FnOnce(String) -> String) {
        let cfg = self.path(&format!("node-{i}.toml"));
        std::fs::write(&cfg, edit(self.config(i))).expect("write config");
        let guard = spawn(
            &format!("node-{i}"),
            command(self.netns.as_deref())
                .arg("run")
                .arg("--config")
                .arg(&cfg),
            &self.path(&format!("node-{i}.log")),
        );
        self.nodes[i - 1] = Some(guard);
    }

    /// Starts every party and waits until each listens: a client dialing a node that is still
    /// loading its share file is refused, and a client every device refuses fails at once.
    pub(crate) fn start_all(&mut self) {
        for i in 1..=self.th.n() {
            self.start(i);
        }
        for i in 1..=self.th.n() {
            let listening = self
                .node(i)
                .wait_for_log("listening on", Duration::from_secs(120));
            assert!(listening, "node {i} never listened\n{}", self.logs());
        }
    }

    pub(crate) fn node(&mut self, i: usize) -> &mut ChildGuard {
        self.nodes[i - 1].as_mut().expect("node started")
    }

    /// `--peer` and key arguments of a client reaching parties `parties`.
    pub(crate) fn client_args(&self, parties: &[usize]) -> Vec<String> {
        let mut a = Vec::new();
        for &i in parties {
            a.push("--peer".to_owned());
            a.push(self.addr(i));
        }
        a.push("--psk".into());
        a.push(self.path("mesh.psk").display().to_string());
        a.push("--identity".into());
        a.push(self.path("client.key").display().to_string());
        a
    }

    /// Everything the nodes logged, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut s = String::new();
        for g in self.nodes.iter().flatten() {
            let _ = writeln!(s, "----- {} -----\n{}", g.name, g.log_text());
        }
        s
    }
}

/// Writes `party-<i>.share` for every party of a fresh provisioning into `dir`, party `i`
/// bound to device `devices[i - 1]`; `prefix` is put in front of the file names.
pub(crate) fn provision_into(dir: &Path, th: Threshold, devices: &[PeerId], prefix: &str) {
    let (ck, _) = Model::files(&model_dir());
    provision_as(dir, th, devices, prefix, file_sha256(&ck).expect("hash"));
}

/// Like [`provision_into`], but the files claim the model with hash `sha` (another model, as
/// far as any party can tell).
pub(crate) fn provision_as(
    dir: &Path,
    th: Threshold,
    devices: &[PeerId],
    prefix: &str,
    sha: [u8; 32],
) {
    let model = Model::load_dir(&model_dir()).expect("model loads");
    let fw = FixedWeights::from_checkpoint(&model.checkpoint).expect("fixed weights");
    let roster: Vec<Vec<u8>> = devices.iter().map(|p| p.to_bytes()).collect();
    let files =
        provision(&fw, sha, th, &roster, &mut rand::rngs::OsRng, |_, _| {}).expect("provision");
    for (i, f) in files.iter().enumerate() {
        f.write(&dir.join(format!("{prefix}party-{}.share", i + 1)), true)
            .expect("write share file");
    }
}

/// Starts `cmd` with stdout and stderr going to `log`.
pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = cmd
        .env("RUST_LOG", "info,libp2p=warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start sotto");
    ChildGuard {
        child: Some(child),
        name: name.to_owned(),
        log: log.to_owned(),
    }
}

/// A finished client run.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Output {
    /// The ids from `--print-ids`.
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("token ids: "))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A running client whose output is collected when it ends.
pub(crate) struct Running {
    guard: ChildGuard,
    started: Instant,
    stdout: PathBuf,
}

/// Starts `sotto <args>` (stdout and stderr to files in `dir`).
pub(crate) fn start_client(dir: &Path, name: &str, args: &[String]) -> Running {
    start_client_in(None, dir, name, args)
}

/// Like [`start_client`], inside network namespace `netns` if given.
pub(crate) fn start_client_in(
    netns: Option<&str>,
    dir: &Path,
    name: &str,
    args: &[String],
) -> Running {
    let stdout = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let out = std::fs::File::create(&stdout).expect("out file");
    let errf = std::fs::File::create(&err).expect("err file");
    let child = command(netns)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(errf)
        .spawn()
        .expect("start sotto");
    Running {
        guard: ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            log: err,
        },
        started: Instant::now(),
        stdout,
    }
}

impl Running {
    pub(crate) fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.guard.log_text()
    }

    /// Waits for the end, at most `limit` (then kills it and panics with its output).
    pub(crate) fn finish(mut self, limit: Duration) -> Output {
        let until = self.started + limit;
        loop {
            let done = self
                .guard
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = done {
                self.guard.child = None;
                return Output {
                    status,
                    stdout: self.stdout_text(),
                    stderr: self.stderr_text(),
                    elapsed: self.started.elapsed(),
                };
            }
            if Instant::now() >= until {
                let (out, err) = (self.stdout_text(), self.stderr_text());
                self.guard.kill();
                panic!(
                    "`sotto {}` did not end within {limit:?}\nstdout:\n{out}\nstderr:\n{err}",
                    self.guard.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `sotto <args>` to its end, at most `limit`.
pub(crate) fn run_client(dir: &Path, name: &str, args: &[String], limit: Duration) -> Output {
    start_client(dir, name, args).finish(limit)
}

/// Reads a whole file, empty if missing.
pub(crate) fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// `ask` arguments for `steps` greedy tokens of [`PROMPT`].
pub(crate) fn ask_args(mesh: &Mesh, parties: &[usize], steps: usize) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "ask".into(),
        "--prompt".into(),
        PROMPT.into(),
        "--steps".into(),
        steps.to_string(),
        "--print-ids".into(),
        "--connect-timeout".into(),
        "20".into(),
    ];
    a.extend(mesh.client_args(parties));
    a
}

//! Python's `multiprocessing` (`Pipe`, `Queue`, `Value`) through
//! `python/peers_mp.py`, when `python3` is on the path.

use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/peers_mp.py");

pub struct Python {
    why_not: Option<String>,
}

impl Python {
    /// Checks that `python3` runs and has `multiprocessing`.
    pub fn find() -> Python {
        let ok = Command::new("python3")
            .args(["-c", "import multiprocessing"])
            .output();
        let why_not = match ok {
            Ok(o) if o.status.success() => None,
            Ok(_) => Some("python3 has no working multiprocessing".into()),
            Err(_) => Some("python3 is not on the path".into()),
        };
        if let Some(w) = &why_not {
            println!("note: python-mp skipped: {w}\n");
        }
        Python { why_not }
    }

    pub fn ok(&self) -> bool {
        self.why_not.is_none()
    }

    pub fn note(&self) -> String {
        format!(
            "python-mp ({})",
            self.why_not.as_deref().unwrap_or("present")
        )
    }

    fn call(&self, args: &[String]) -> String {
        let out = Command::new("python3")
            .arg(SCRIPT)
            .args(args)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "peers_mp.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn figure(&self, args: &[String]) -> f64 {
        let s = self.call(args);
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("peers_mp.py {args:?}: bad figure {s:?}"))
    }

    /// W1: every round-trip time, ns.
    pub fn w1(&self, n: u64) -> Vec<u64> {
        self.call(&["w1".into(), n.to_string()])
            .split_whitespace()
            .map(|t| t.parse().expect("round-trip time"))
            .collect()
    }

    /// Streaming: ns per message.
    pub fn stream(&self, n: u64, size: usize) -> f64 {
        self.figure(&["stream".into(), n.to_string(), size.to_string()])
    }

    /// W4: ns per increment with `procs` processes.
    pub fn w4(&self, n: u64, procs: u32) -> f64 {
        self.figure(&["w4".into(), n.to_string(), procs.to_string()])
    }

    /// W5: messages per second, 2P2C.
    pub fn w5(&self, n: u64) -> f64 {
        self.figure(&["w5".into(), n.to_string()])
    }

    /// W6: ns per start + join of a process with start method `method`
    /// (0 fork, 1 spawn, 2 forkserver), `n` of them.
    pub fn start(&self, method: u32, n: u64) -> f64 {
        self.figure(&["start".into(), method.to_string(), n.to_string()])
    }

    /// W6: a 2-worker pool (`kind` 0 `Pool`, 1 `ProcessPoolExecutor`);
    /// `task` 0: median apply round trip, ns; 1 and 2: tasks/s of `map`
    /// with chunksize 1 and with the default.
    pub fn pool(&self, kind: u32, task: u32, n: u64) -> f64 {
        self.figure(&[
            "pool".into(),
            kind.to_string(),
            task.to_string(),
            n.to_string(),
        ])
    }
}

const FRAMES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/peers_frames.py");

impl Python {
    /// W7: why numpy's frames cannot run (`None`: they can).
    pub fn frames_missing(&self) -> Option<String> {
        if let Some(w) = &self.why_not {
            return Some(w.clone());
        }
        let ok = Command::new("python3")
            .args(["-c", "import numpy"])
            .output();
        match ok {
            Ok(o) if o.status.success() => None,
            _ => Some("python3 has no numpy (pip install numpy)".into()),
        }
    }

    /// W7: frames/s of Python's 2-worker `Pool.map` (chunksize 1, numpy
    /// filter) over the `n` frames in `file`, and their checksum.
    pub fn frames(&self, file: &std::path::Path, n: usize) -> (f64, u64) {
        let out = Command::new("python3")
            .arg(FRAMES_SCRIPT)
            .arg(file)
            .arg(n.to_string())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "peers_frames.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).expect("utf-8 output");
        let mut it = s.split_whitespace();
        let fps = it.next().and_then(|v| v.parse().ok());
        let sum = it.next().and_then(|v| v.parse().ok());
        match (fps, sum) {
            (Some(f), Some(c)) => (f, c),
            _ => panic!("peers_frames.py: bad output {s:?}"),
        }
    }
}

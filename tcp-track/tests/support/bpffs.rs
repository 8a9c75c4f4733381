//! A bpffs of a test's own, for daemons that pin their state.

use std::path::PathBuf;

/// A bpffs of the test's own; unpinned, unmounted and removed on drop.
pub struct Bpffs {
    pub dir: PathBuf,
}

impl Bpffs {
    pub fn new(tag: &str) -> Bpffs {
        let dir = PathBuf::from(format!("/tmp/tt-pins-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(Some("bpf"), &dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>).expect("mounting a bpffs");
        Bpffs { dir }
    }

    /// The state directory the daemons are given.
    pub fn state(&self) -> String {
        self.dir.join("state").display().to_string()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        // Unpinning the links detaches whatever a failed test left attached.
        let _ = std::fs::remove_dir_all(self.dir.join("state"));
        let _ = nix::mount::umount(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

//! Processes by their parent, from Linux's /proc.
use anyhow::{Context, Result};

/// The pids whose parent is `parent` (for the postmaster: every backend and auxiliary process,
/// which PostgreSQL forks from it).
pub fn child_pids(parent: i32) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .context("cannot read /proc")?
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process may exit between the listing and this read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parent_of(&stat) == Some(parent) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The ppid in a /proc/PID/stat line, `pid (comm) state ppid …` (proc(5)): comm may hold
/// spaces and parentheses, so read after the last `)`.
fn parent_of(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parent_of;

    #[test]
    fn the_parent_is_read_after_a_command_name_with_spaces_and_parentheses() {
        assert_eq!(parent_of("42 (postgres: a (b) c) S 17 42 42 0"), Some(17));
        assert_eq!(parent_of("garbage"), None);
    }
}

//! Which file backs a mapping, and whether another process maps it, from
//! `/proc/PID/maps`.
//!
//! A lock holder must map the lock's segment to take it, and `execve`
//! drops every mapping: a holder that no longer maps the segment's file has
//! replaced its image (or unmapped a lock it still held, which no guard
//! allows) and cannot be holding the lock any more. Files are named by
//! device and inode, the same in every process and mount namespace (a
//! `/dev/shm` object, a `memfd`, the hidden file behind a shared anonymous
//! mapping).

/// The file behind a mapping: device (major, minor) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) struct MappedFile {
    dev: (u32, u32),
    inode: u64,
}

/// One line of a maps file: its address range and file (inode 0: none).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn parse_line(line: &[u8]) -> Option<(usize, usize, MappedFile)> {
    let text = std::str::from_utf8(line.get(..line.len().min(160))?)
        .ok()
        .or_else(|| {
            // The path may hold bytes that are not UTF-8: the fields before
            // it are ASCII.
            let end = line.iter().position(|&b| b >= 0x80)?;
            std::str::from_utf8(&line[..end]).ok()
        })?;
    let mut f = text.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let (_perms, _offset) = (f.next()?, f.next()?);
    let (major, minor) = f.next()?.split_once(':')?;
    let inode = f.next()?.parse().ok()?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
        MappedFile {
            dev: (
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            ),
            inode,
        },
    ))
}

/// Reads `/proc/<who>/maps` line by line until `stop` says so; `None` if it
/// cannot be read (no procfs, a process gone, not permitted).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn scan<T>(
    who: &str,
    mut stop: impl FnMut(usize, usize, MappedFile) -> Option<T>,
) -> Option<Option<T>> {
    use std::io::BufRead;
    let f = std::fs::File::open(format!("/proc/{who}/maps")).ok()?;
    let mut r = std::io::BufReader::with_capacity(16 * 1024, f);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => return Some(None),
            Ok(_) => {}
            Err(_) => return None,
        }
        if let Some((start, end, file)) = parse_line(&line) {
            if let Some(t) = stop(start, end, file) {
                return Some(Some(t));
            }
        }
    }
}

/// The file behind this process's mapping of `addr`; `None` where no file
/// backs it (private anonymous memory, the heap) or where it cannot be
/// learnt.
pub(crate) fn file_at(addr: usize) -> Option<MappedFile> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let found = scan("self", |start, end, file| {
            (start <= addr && addr < end).then_some(file)
        })??;
        (found.inode != 0).then_some(found)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = addr;
        None
    }
}

/// Whether thread or process `id` (of this pid namespace) maps `file`:
/// `None` where its maps cannot be read (gone, not permitted, no procfs).
pub(crate) fn maps_file(id: u32, file: MappedFile) -> Option<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // A task that exists but whose maps read empty is a kernel thread
        // or one exiting: no answer from it.
        let mut any = false;
        let found = scan(&id.to_string(), |_, _, f| {
            any = true;
            (f == file).then_some(())
        })?;
        match (found, any) {
            (Some(()), _) => Some(true),
            (None, true) => Some(false),
            (None, false) => None,
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (id, file);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let l = b"7f0000000000-7f0000001000 rw-s 00000000 00:1a 4242  /dev/shm/x (deleted)\n";
        let (s, e, f) = parse_line(l).unwrap();
        assert_eq!((s, e), (0x7f00_0000_0000, 0x7f00_0000_1000));
        assert_eq!(
            f,
            MappedFile {
                dev: (0, 0x1a),
                inode: 4242
            }
        );
        let odd = b"1000-2000 r--p 00000000 fd:01 7 /tmp/\xff\xfe\n";
        assert_eq!(parse_line(odd).unwrap().2.dev, (0xfd, 1));
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"1000-2000 r--p 0 zz:01 7\n").is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_shared_mapping_is_found_here_and_not_in_a_process_without_it() {
        let seg = crate::Segment::anonymous(4096).unwrap();
        let file = file_at(seg.data_ptr() as usize).expect("a memfd backs it");
        assert_eq!(maps_file(crate::sys::proc::pid(), file), Some(true));
        let heap = Box::new(0u64);
        assert_eq!(file_at(&*heap as *const u64 as usize), None);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let t = std::time::Instant::now();
        // Until the child has replaced its image (its maps are then ours no
        // more, whatever it inherited across the fork).
        let mut answer = maps_file(child.id(), file);
        while answer != Some(false) && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            answer = maps_file(child.id(), file);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(answer, Some(false));
        assert_eq!(maps_file(u32::MAX >> 2, file), None, "no such process");
    }
}

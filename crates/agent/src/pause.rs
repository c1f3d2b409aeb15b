//! The pause container of awsvpc tasks: it owns the task's network namespace (its fixed address
//! on the subnet's bridge) and the task's containers join it. Its image is built here, with no
//! registry: a root filesystem holding one static x86-64 program that blocks in `pause(2)`
//! forever (ECS's own pause container does the same), imported into the Engine as
//! [`PAUSE_IMAGE`]. On other architectures `--pause-image` names an image to use instead.

/// The image the agent imports and runs as the pause container.
pub const PAUSE_IMAGE: &str = "gantry/pause:1";

/// The container name label of pause containers (the name ECS's agent gives them).
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// The pause program: a static ELF64 executable for x86-64 whose whole code is
/// `loop: mov eax, 34 (pause); syscall; jmp loop`. It never exits on its own; the agent stops
/// it with SIGKILL (as PID 1 it ignores signals it has no handler for).
pub fn pause_elf_x86_64() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let header_len: u64 = 64 + 56;
    let total = header_len + CODE.len() as u64;
    let mut out = Vec::with_capacity(total as usize);
    // ELF header: 64-bit, little endian, version 1, System V ABI.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    out.extend_from_slice(&(BASE + header_len).to_le_bytes()); // entry point
    out.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this header
    out.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&64u16.to_le_bytes()); // header size
    out.extend_from_slice(&56u16.to_le_bytes()); // program header size
    out.extend_from_slice(&1u16.to_le_bytes()); // one program header
    out.extend_from_slice(&[0; 6]); // section header size, count, string index
    // One loadable, readable and executable segment: the whole file.
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    out.extend_from_slice(&0u64.to_le_bytes()); // offset
    out.extend_from_slice(&BASE.to_le_bytes()); // virtual address
    out.extend_from_slice(&BASE.to_le_bytes()); // physical address
    out.extend_from_slice(&total.to_le_bytes()); // size in the file
    out.extend_from_slice(&total.to_le_bytes()); // size in memory
    out.extend_from_slice(&0x1000u64.to_le_bytes()); // alignment
    out.extend_from_slice(&CODE);
    out
}

/// A tar archive (ustar) holding one executable file `name` with `content`, owned by root.
pub fn single_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, field: &[u8]| {
        h[at..at + field.len()].copy_from_slice(field);
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000755\0"); // mode
    put(&mut header, 108, b"0000000\0"); // uid
    put(&mut header, 116, b"0000000\0"); // gid
    put(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    ); // size
    put(&mut header, 136, b"00000000000\0"); // mtime
    put(&mut header, 156, b"0"); // regular file
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    // The checksum is computed with its own field as spaces.
    put(&mut header, 148, b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The root filesystem of [`PAUSE_IMAGE`] on this architecture, if Gantry can build it.
pub fn pause_rootfs() -> Option<Vec<u8>> {
    (std::env::consts::ARCH == "x86_64").then(|| single_file_tar("pause", &pause_elf_x86_64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_program_is_a_static_x86_64_executable() {
        let elf = pause_elf_x86_64();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf.len(), 64 + 56 + 9);
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 0x3e);
        let entry = u64::from_le_bytes(elf[24..32].try_into().expect("8 bytes"));
        assert_eq!(entry, 0x40_0000 + 120);
        assert_eq!(&elf[120..], &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    }

    #[test]
    fn tar_has_one_file_and_a_valid_checksum() {
        let t = single_file_tar("pause", b"hello");
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[257..262], b"ustar");
        let mut h = [0u8; 512];
        h.copy_from_slice(&t[..512]);
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).expect("octal"), 8)
            .expect("checksum");
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|b| u32::from(*b)).sum::<u32>());
        assert_eq!(&t[512..517], b"hello");
    }
}

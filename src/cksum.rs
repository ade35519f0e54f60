//! POSIX `cksum` of a command's output: what a host can compute of its own output with a
//! tool every POSIX system has, so that the controller keeps a few bytes instead of the
//! output, and a host can tell by itself whether it prints what it printed before.

use crc::{Crc, Table, CRC_32_CKSUM};

/// Sixteen tables, a 16 kB constant: a host's 94 kB `docker inspect` is checksummed at each
/// pre-flight, and one table went a byte at a time (1 % of the controller's CPU).
const CKSUM: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_CKSUM);

/// What `cksum` prints of some bytes: the CRC and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cksum {
    pub crc: u32,
    pub len: u64,
}

impl Cksum {
    pub fn of(data: &[u8]) -> Cksum {
        let mut digest = CKSUM.digest();
        digest.update(data);
        // POSIX: the length follows the data, least significant byte first, in as few
        // bytes as it takes.
        let len = data.len() as u64;
        let mut rest = len;
        while rest > 0 {
            digest.update(&[(rest & 0xff) as u8]);
            rest >>= 8;
        }
        Cksum {
            crc: digest.finalize(),
            len,
        }
    }

    /// The line `cksum` prints for its standard input: `CRC LEN`.
    pub fn line(&self) -> String {
        format!("{} {}", self.crc, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_values_posix_cksum_prints() {
        // `printf '' | cksum`, `printf 'a' | cksum`, `printf '123456789' | cksum`, from
        // GNU coreutils 9.1.
        assert_eq!(Cksum::of(b"").line(), "4294967295 0");
        assert_eq!(Cksum::of(b"a").line(), "1220704766 1");
        assert_eq!(Cksum::of(b"123456789").line(), "930766865 9");
        // A length of three bytes: `python3 -c '...bytes(i % 251 ...)' | cksum`.
        let long: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(Cksum::of(&long).line(), "2458292535 70000");
    }
}

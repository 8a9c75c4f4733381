//! TCP header constants and flag-combination classification.

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// Whether a flag combination is one a conforming TCP ever sends.
///
/// This is nf_conntrack's `tcp_valid_flags` table: PSH, ECE and CWR are
/// ignored (they may accompany anything), and of the remaining bits only these
/// combinations are valid. Everything else (SYN+FIN, SYN+RST, FIN without ACK,
/// no flags at all, the "Christmas tree") is a scan or a forgery.
pub const fn flags_valid(flags: u8) -> bool {
    let f = flags & !(PSH | ECE | CWR);
    matches!(
        f,
        SYN | 0x22 /* SYN|URG */ | 0x12 /* SYN|ACK */ | RST | 0x14 /* RST|ACK */
            | 0x11 /* FIN|ACK */ | 0x31 /* FIN|ACK|URG */ | ACK | 0x30 /* ACK|URG */
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf_conntrack_valid_flag_table() {
        for f in [SYN, SYN | ACK, RST, RST | ACK, FIN | ACK, ACK, ACK | PSH, SYN | ECE | CWR, FIN | ACK | URG] {
            assert!(flags_valid(f), "{f:#04x} should be valid");
        }
        for f in [0, SYN | FIN, SYN | RST, FIN, FIN | PSH | URG, 0xff, SYN | RST | ACK, FIN | RST | ACK] {
            assert!(!flags_valid(f), "{f:#04x} should be invalid");
        }
    }
}

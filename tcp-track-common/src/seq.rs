//! TCP sequence-number arithmetic (RFC 9293 §3.4): modulo 2^32, compared
//! through the signed difference, so connections that cross the wrap point
//! work. Never panics, never overflows.

/// `a` comes strictly before `b` in sequence space.
#[inline(always)]
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes strictly after `b`.
#[inline(always)]
pub const fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `a` is at or before `b`.
#[inline(always)]
pub const fn before_eq(a: u32, b: u32) -> bool {
    !after(a, b)
}

/// `a` is at or after `b`.
#[inline(always)]
pub const fn after_eq(a: u32, b: u32) -> bool {
    !before(a, b)
}

/// `lo <= x <= hi` in sequence space.
#[inline(always)]
pub const fn between(x: u32, lo: u32, hi: u32) -> bool {
    after_eq(x, lo) && before_eq(x, hi)
}

/// The later of two sequence numbers.
#[inline(always)]
pub const fn max(a: u32, b: u32) -> u32 {
    if after(a, b) { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_at_2_pow_32() {
        assert!(before(u32::MAX, 0));
        assert!(after(5, u32::MAX - 5));
        assert!(between(2, u32::MAX - 1, 10));
        assert_eq!(max(u32::MAX, 3), 3);
        assert!(before_eq(7, 7) && after_eq(7, 7));
    }

    proptest! {
        #[test]
        fn order_is_shift_invariant(a in any::<u32>(), d in 1u32..0x7fff_ffff, shift in any::<u32>()) {
            let b = a.wrapping_add(d);
            prop_assert!(before(a.wrapping_add(shift), b.wrapping_add(shift)));
            prop_assert!(after(b, a));
        }
    }
}

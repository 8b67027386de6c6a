//! The one place randomness enters: the operating system's CSPRNG.

/// `N` bytes from the OS CSPRNG.
///
/// # Panics
/// If the operating system cannot provide randomness. There is no safe fallback for a session
/// token, and on Linux `getrandom(2)` only fails before the entropy pool is initialised at boot;
/// issuing predictable tokens instead would be far worse than refusing to serve.
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)] // See "Panics" above.
    getrandom::fill(&mut out).expect("the OS CSPRNG is unavailable");
    out
}

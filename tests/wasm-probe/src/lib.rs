//! Exports for the cross-platform zone check (tests/tests/wasm_zone.rs).

use heady_shared::zone::{splitmix64, zone_of};

/// The golden vector the shared crate pins: `((splitmix64(salt ^ i) >> 40) / 2^24) - 0.5`.
pub fn golden_vector(dim: usize, salt: u64) -> Vec<f32> {
    (0..dim)
        .map(|i| ((splitmix64(salt ^ i as u64) >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
        .collect()
}

/// Writes [zone, x, y, z] as four f64 at `out` for the golden vector (dim, salt).
///
/// # Safety
/// `out` must point to 4 writable f64.
#[no_mangle]
pub unsafe extern "C" fn golden_zone(dim: u32, salt: u32, out: *mut f64) -> i32 {
    match zone_of(&golden_vector(dim as usize, u64::from(salt))) {
        Ok(z) => {
            let vals = [
                f64::from(z.zone),
                z.coordinates.x,
                z.coordinates.y,
                z.coordinates.z,
            ];
            for (i, v) in vals.iter().enumerate() {
                unsafe { *out.add(i) = *v };
            }
            0
        }
        Err(_) => -1,
    }
}

/// A static buffer for `golden_zone`'s output, so the host needs no allocator.
#[no_mangle]
pub extern "C" fn out_buffer() -> *mut f64 {
    static mut BUF: [f64; 4] = [0.0; 4];
    &raw mut BUF as *mut f64
}

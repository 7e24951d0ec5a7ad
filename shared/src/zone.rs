//! Vector Zone: a fixed 3-D projection of an embedding, and the octant (0..7) it falls in.
//!
//! Projection (documented, fixed forever, any dimension):
//! for component `i`, let `h = splitmix64(ZONE_SEED + i)`; axis `a` (0 = x, 1 = y, 2 = z) uses
//! sign `+1` if bit `a` of `h` is 0, else `-1`. Then
//! `coord[a] = sum_i sign(a, i) * v[i] / (|v| * sqrt(dim))`, summed in `f64` in index order.
//! Multiplying by +-1 is exact and IEEE-754 addition in a fixed order is deterministic, so the
//! answer is bit-identical on x86_64 and wasm32. Octant: bit 0 set when x >= 0, bit 1 when
//! y >= 0, bit 2 when z >= 0. The zero vector sits at the origin, octant 7.

use serde::Serialize;

pub const ZONE_SEED: u64 = 0x4845_4144_595A_4F4E; // "HEADYZON"

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ZoneCoordinates {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Zone {
    pub zone: u8,
    pub coordinates: ZoneCoordinates,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneError {
    #[error("embedding is empty")]
    Empty,
    #[error("embedding[{index}] is not a finite number")]
    NotFinite { index: usize },
}

pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The zone of an embedding (see the module docs for the exact projection).
pub fn zone_of(v: &[f32]) -> Result<Zone, ZoneError> {
    if v.is_empty() {
        return Err(ZoneError::Empty);
    }
    let mut acc = [0.0f64; 3];
    let mut norm2 = 0.0f64;
    for (i, &x) in v.iter().enumerate() {
        if !x.is_finite() {
            return Err(ZoneError::NotFinite { index: i });
        }
        let x = f64::from(x);
        norm2 += x * x;
        let h = splitmix64(ZONE_SEED.wrapping_add(i as u64));
        for (a, slot) in acc.iter_mut().enumerate() {
            if h >> a & 1 == 0 {
                *slot += x;
            } else {
                *slot -= x;
            }
        }
    }
    let scale = if norm2 > 0.0 {
        1.0 / (norm2.sqrt() * (v.len() as f64).sqrt())
    } else {
        0.0
    };
    let [x, y, z] = acc.map(|c| c * scale);
    let zone = u8::from(x >= 0.0) | u8::from(y >= 0.0) << 1 | u8::from(z >= 0.0) << 2;
    Ok(Zone {
        zone,
        coordinates: ZoneCoordinates { x, y, z },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A fixed vector whose zone is pinned below. The same numbers are checked in wasm32
    /// by tests/tests/wasm_zone.rs, which runs this function compiled to wasm in Node.
    pub fn golden_vector(dim: usize, salt: u64) -> Vec<f32> {
        (0..dim)
            .map(|i| ((splitmix64(salt ^ i as u64) >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
            .collect()
    }

    #[test]
    fn golden_zones_are_stable() {
        let got: Vec<(u8, u64, u64, u64)> = (0..4)
            .map(|s| {
                let z = zone_of(&golden_vector(384, s)).unwrap();
                (
                    z.zone,
                    z.coordinates.x.to_bits(),
                    z.coordinates.y.to_bits(),
                    z.coordinates.z.to_bits(),
                )
            })
            .collect();
        let text = format!("{got:?}");
        // Pinned once; a change here changes every stored zone and must be deliberate.
        assert_eq!(text, include_str!("zone_golden.txt").trim());
    }

    #[test]
    fn octant_follows_the_signs() {
        let z = zone_of(&[0.0; 8]).unwrap();
        assert_eq!(z.zone, 7);
        assert!(zone_of(&[]).is_err());
        assert_eq!(
            zone_of(&[1.0, f32::NAN]),
            Err(ZoneError::NotFinite { index: 1 })
        );
    }

    proptest! {
        #[test]
        fn zone_is_scale_invariant_and_in_range(v in proptest::collection::vec(-1.0f32..1.0, 1..512), k in 0.01f32..100.0) {
            let a = zone_of(&v).unwrap();
            prop_assert!(a.zone < 8);
            let scaled: Vec<f32> = v.iter().map(|x| x * k).collect();
            let b = zone_of(&scaled).unwrap();
            let near_zero = |c: f64| c.abs() < 1e-4;
            if !(near_zero(a.coordinates.x) || near_zero(a.coordinates.y) || near_zero(a.coordinates.z)) {
                prop_assert_eq!(a.zone, b.zone);
            }
            prop_assert!(a.coordinates.x.abs() <= 1.0 + 1e-9);
        }

        #[test]
        fn opposite_vectors_sit_in_opposite_octants(v in proptest::collection::vec(-1.0f32..1.0, 1..64)) {
            let a = zone_of(&v).unwrap();
            let neg: Vec<f32> = v.iter().map(|x| -x).collect();
            let b = zone_of(&neg).unwrap();
            if a.coordinates.x != 0.0 && a.coordinates.y != 0.0 && a.coordinates.z != 0.0 {
                prop_assert_eq!(a.zone ^ 7, b.zone);
            }
        }
    }
}

//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use mesh::memory::{MemTransport, run_with_client};
use mesh::{MeshError, Party, Share};

/// The configurations every property test runs on.
pub const CONFIGS: [(usize, usize); 4] = [(3, 1), (4, 1), (5, 2), (7, 3)];

/// The client shares each input vector (one message each); every party runs `f` on its shares
/// and sends the result to the client, which reconstructs it.
pub fn secure<F>(n: usize, t: usize, seed: u64, inputs: &[&[i64]], out_len: usize, f: F) -> Vec<i64>
where
    F: Fn(&mut Party<MemTransport>, Vec<Vec<Share>>) -> Result<Vec<Share>, MeshError> + Sync,
{
    let lens: Vec<usize> = inputs.iter().map(|v| v.len()).collect();
    let (out, parties) = run_with_client(
        n,
        t,
        seed,
        |c| {
            for v in inputs {
                c.share_input(v).expect("share input");
            }
            c.reconstruct(out_len).expect("reconstruct")
        },
        |p| -> Result<usize, MeshError> {
            let xs = lens
                .iter()
                .map(|&l| p.input_from_client(l))
                .collect::<Result<Vec<_>, _>>()?;
            let y = f(p, xs)?;
            p.open_to_client(&y)?;
            Ok(y.len())
        },
    )
    .expect("mesh");
    for r in &parties {
        assert!(r.is_ok(), "party failed: {r:?}");
    }
    out
}

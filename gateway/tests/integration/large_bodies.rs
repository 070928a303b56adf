//! Bodies over 100 MB, both directions, streamed through the gateway over each transport:
//! the client sends and hashes as it goes, so nothing on the path needs to hold a whole
//! body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use aimux_wire::Outcome;
use sha2::{Digest, Sha256};
use support::upstream::{self, pattern};
use support::{Mesh, Running, Transport, config, connect, over_both, read_envelope, request};

const LEN: usize = 100 * 1024 * 1024 + 11;
const BOUND: Duration = Duration::from_secs(300);

over_both!(hundred_megabyte_bodies_stream_both_ways);

async fn hundred_megabyte_bodies_stream_both_ways(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    // One 1 MiB block, repeated: the expected hash is computed the same way.
    let block = bytes::Bytes::from(pattern(1024 * 1024));
    let blocks = || {
        (0..LEN.div_ceil(block.len())).map(|i| {
            let end = ((i + 1) * block.len()).min(LEN) - i * block.len();
            block.slice(..end)
        })
    };
    let mut expected = Sha256::new();
    blocks().for_each(|b| expected.update(&b));
    let expected = hex::encode(expected.finalize());

    // Upload: the echo upstream sends every byte back while it is still arriving.
    let run = async {
        let (mut send, mut recv) = conn.open().await.unwrap();
        let env = request(&mesh.alice, "echo", "PUT", "/big");
        send.write_all(&env.to_bytes(&Default::default()).unwrap())
            .await
            .unwrap();
        let writer = async {
            for b in blocks() {
                send.write_chunk(b).await.unwrap();
            }
            send.finish().unwrap();
        };
        let reader = async {
            let (envelope, first) = read_envelope(&mut recv).await.unwrap();
            assert_eq!(envelope.outcome, Outcome::Forwarded);
            let (mut len, mut hash) = (first.len(), Sha256::new());
            hash.update(&first);
            while let Some(chunk) = recv.read_chunk().await.unwrap() {
                len += chunk.len();
                hash.update(&chunk);
            }
            (len, hex::encode(hash.finalize()))
        };
        let ((), (len, hash)) = tokio::join!(writer, reader);
        assert_eq!(len, LEN);
        assert_eq!(hash, expected);
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("echo within the bound");
    gw.stop().await.unwrap();
}

//! An NFSv3 client of the server on a loopback port (nfs3_client), for tests that hold handles.

#![allow(clippy::unwrap_used, dead_code)] // test support code

use nfs3_client::nfs3_types::nfs3::nfs_fh3;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Client, Nfs3ConnectionBuilder};
use tokio::net::TcpStream;

pub type Client = Nfs3Client<TokioIo<TcpStream>>;

/// MOUNTs `/` on the server at 127.0.0.1:`port` (MOUNT and NFS on one port): the root handle
/// and a client (AUTH_NULL).
pub async fn mount(port: u16) -> (nfs_fh3, Client) {
    let conn = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", "/")
        .connect_from_privileged_port(false)
        .mount_port(port)
        .nfs3_port(port)
        .mount()
        .await
        .unwrap();
    (conn.root_nfs_fh3(), conn.into_nfs3_client())
}

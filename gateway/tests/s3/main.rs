//! aws-sdk-s3 integration tests of jets3-gateway against a real nats-server.
//!
//! One test binary (linking aws-sdk-s3 is slow). Every test starts its own nats-server
//! (`$JETS3_TOOLS_DIR/bin/nats-server`, installed by `make tools`) and an in-process gateway.

mod common;

mod access;
mod addresses;
mod adversarial;
mod audit;
mod auth;
mod bad_input;
mod bodies;
mod breaker;
mod buckets;
mod cache;
mod checksums;
mod conditional;
mod conditional_writes;
mod config;
mod edges;
mod failover;
mod jwt;
mod leader_reads;
mod lifecycle;
mod limits;
mod list;
mod multipart;
mod nats;
mod netfault;
mod new_keys;
mod objects;
mod part_reads;
mod policies;
mod push;
mod ranges;
mod replicated_writes;
mod retried_complete;
mod small_reads;
mod snapshots;
mod soak;
mod spliced;
mod tls;
mod versions;

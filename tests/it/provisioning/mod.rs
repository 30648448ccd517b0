//! The provisioner on real parts (SEMANTICS.md §10–11): discovery, dnsmasq serving DHCP and
//! DNS to namespace nodes, and the OS-install handshake.

mod discovery;
mod dnsmasq;

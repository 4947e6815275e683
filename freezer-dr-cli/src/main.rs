//! `freezer-dr`: compute-node high availability for OpenStack. Fences dead compute hosts, evacuates their
//! instances through Nova, tells the operators and the affected users.
//!
//! The binary is its list of driver crates, each behind its Cargo feature (core's `testing` fakes come
//! with core, which every binary links), and the command line of `freezer_dr_cli`.

freezer_dr_cli::drivers![
    #[cfg(feature = "nova")]
    freezer_dr_nova,
    #[cfg(feature = "ipmi")]
    freezer_dr_drivers_ipmi,
    #[cfg(feature = "redfish")]
    freezer_dr_drivers_redfish,
    #[cfg(feature = "libvirt")]
    freezer_dr_drivers_libvirt,
    #[cfg(feature = "email")]
    freezer_dr_email,
    #[cfg(feature = "prometheus")]
    freezer_dr_prometheus,
    #[cfg(feature = "tcp")]
    freezer_dr_tcp,
];

fn main() -> std::process::ExitCode {
    freezer_dr_cli::main()
}

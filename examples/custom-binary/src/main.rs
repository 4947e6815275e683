//! A custom freezer-dr binary: every subcommand and exit code of `freezer-dr`, with only the drivers it
//! names: Nova (`nova` monitor and evacuator, `keystone` directory), IPMI (`ipmi` fencer) and email
//! (`email` notifier). `type = "libvirt"` is unknown to it, by design.

freezer_dr_cli::drivers![freezer_dr_nova, freezer_dr_drivers_ipmi, freezer_dr_email];

fn main() -> std::process::ExitCode {
    freezer_dr_cli::main()
}

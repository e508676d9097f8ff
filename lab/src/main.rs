//! `lab`: network namespaces and QEMU VMs that really netboot through the provisioner.
//! Not built yet; it fails loudly rather than pretend.

fn main() {
    eprintln!("lab: not implemented yet (see the lab issue); nothing was run");
    std::process::exit(2);
}

//! Mounts the demo app (see the crate docs in lib.rs).

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(recached_demo::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("recached-demo runs in a browser: build it with `trunk build --release` (or run scripts/run.sh)");
}

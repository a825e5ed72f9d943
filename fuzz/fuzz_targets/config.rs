//! The config loader on arbitrary text: a config or an error naming what is wrong, never a
//! panic.
#![no_main]

use geardriver::config::Config;
use geardriver::plugin::Registry;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Registry::with_builtins);
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::from_toml(text, Path::new("fuzz.toml"), registry) {
            Ok(config) => {
                let _ = config.pools();
                let _ = config.render();
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.toml: "), "{e}"),
        }
    }
});

//! Configuration text: read as `Settings::load` reads its file (without the environment and
//! the `*_file` secrets, which would read whatever file the input names), then checked by
//! `problems()` as `serve` and `check` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowgate::configuration::Settings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_yaml_str(text) {
        let _ = settings.problems();
        let _ = settings.store.backend();
        let _ = format!("{settings:?}");
    }
});

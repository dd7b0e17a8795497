#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| offshoot_fuzz::router_path_host(data));

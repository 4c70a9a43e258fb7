#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    recached_fuzz_targets::aof_decode(data);
});

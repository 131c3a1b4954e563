#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protoshelf_fuzz::compile(data));

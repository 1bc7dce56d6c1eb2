#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rds_sensor_fuzz::tds(data));

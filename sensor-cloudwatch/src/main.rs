//! `rds-sensor-cloudwatch`: `rds-sensor` with the CloudWatch sinks built in (the same command
//! line; `--cloudwatch`, `--metrics-sink stdout`, …).

fn main() {
    rds_sensor::cli::main(Some(&sensor_cloudwatch::CloudWatchExtension));
}

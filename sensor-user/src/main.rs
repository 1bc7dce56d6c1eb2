//! `rds-sensor`: the agent binary. The command line is [`rds_sensor::cli`]; this binary has no
//! AWS SDK in it (CloudWatch switches run `rds-sensor-cloudwatch`, see `cli::delegate`).

fn main() {
    rds_sensor::cli::main(None);
}

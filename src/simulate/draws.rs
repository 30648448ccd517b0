//! What each simulated noderole is told to do: fail or not, and how long to take. Both are
//! drawn from the seed and the noderole's place in the fleet (node index, role index) alone,
//! never from timing or the order runs are claimed in, so a seed replays the same outcome.

use std::{fmt, str::FromStr, time::Duration};

use serde_json::{Value, json};

use crate::units::parse_duration;

/// How long a simulated run takes: `--delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    /// `0`, `200ms`, `2s`: every run takes this long.
    Fixed(Duration),
    /// `uniform:100ms..2s`: evenly spread between the two bounds.
    Uniform(Duration, Duration),
    /// `exp:500ms`: exponentially distributed with this mean (many short runs, a long tail).
    Exponential(Duration),
}

/// The syntax, for `--help` and error messages.
pub const DELAY_SYNTAX: &str =
    "a duration (0, 200ms, 2s), uniform:MIN..MAX (uniform:100ms..2s) or exp:MEAN (exp:500ms)";

impl FromStr for Delay {
    type Err = String;

    fn from_str(text: &str) -> Result<Delay, String> {
        let text = text.trim();
        let duration =
            |part: &str| parse_duration(part).map_err(|e| format!("--delay {text}: {e}"));
        match text.split_once(':') {
            None => Ok(Delay::Fixed(duration(text)?)),
            Some(("uniform", range)) => {
                let (low, high) = range.split_once("..").ok_or_else(|| {
                    format!("--delay {text}: a uniform delay is uniform:MIN..MAX, e.g. uniform:100ms..2s")
                })?;
                let (low, high) = (duration(low)?, duration(high)?);
                if low > high {
                    return Err(format!(
                        "--delay {text}: the minimum is larger than the maximum"
                    ));
                }
                Ok(Delay::Uniform(low, high))
            }
            Some(("exp", mean)) => Ok(Delay::Exponential(duration(mean)?)),
            Some((kind, _)) => Err(format!(
                "--delay {text}: unknown distribution `{kind}`; use {DELAY_SYNTAX}"
            )),
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // whole seconds as seconds, anything finer in milliseconds: both parse back
        let ms = |d: &Duration| match d.as_millis() {
            0 => "0".to_string(),
            ms if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        match self {
            Delay::Fixed(d) => write!(f, "{}", ms(d)),
            Delay::Uniform(low, high) => write!(f, "uniform:{}..{}", ms(low), ms(high)),
            Delay::Exponential(mean) => write!(f, "exp:{}", ms(mean)),
        }
    }
}

impl Delay {
    /// The delay in seconds for a uniform draw `u` in [0, 1).
    pub fn seconds(&self, u: f64) -> f64 {
        match self {
            Delay::Fixed(d) => d.as_secs_f64(),
            Delay::Uniform(low, high) => {
                low.as_secs_f64() + u * (high.as_secs_f64() - low.as_secs_f64())
            }
            // inverse of the CDF; 1 - u is in (0, 1], so the logarithm is finite
            Delay::Exponential(mean) => -mean.as_secs_f64() * (1.0 - u).ln(),
        }
    }
}

/// Parses `--fail-rate`: a probability from 0 to 1 (`0.02`) or a percentage (`2%`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let rate = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("`{text}` is not a rate (try 0.02 or 2%)"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("`{text}` is not between 0 and 1 (0% and 100%)"));
    }
    Ok(rate)
}

/// Independent draws per purpose: the failure and the delay of one noderole never share
/// their randomness.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Fail = 1,
    Delay = 2,
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of its input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) for (seed, node, role, stream): the same inputs always give
/// the same number, on every machine.
fn unit(seed: u64, node: u64, role: u64, stream: Stream) -> f64 {
    let h = mix(mix(mix(mix(seed) ^ node) ^ role) ^ stream as u64);
    // the top 53 bits: exactly representable, never 1.0
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What one noderole is told to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub fail: bool,
    /// Seconds, rounded to the millisecond (what the report and the data say).
    pub delay: f64,
}

impl Draw {
    /// The noderole's data, read by the simulation jig (`test.fail`, `test.delay`).
    pub fn data(&self) -> Value {
        json!({"test": {"fail": self.fail, "delay": self.delay}})
    }
}

/// The draws of a simulation: a seed, the failure probability and the delay distribution.
#[derive(Debug, Clone, Copy)]
pub struct Draws {
    pub seed: u64,
    pub fail_rate: f64,
    pub delay: Delay,
}

impl Draws {
    /// What the noderole of role `role` on node `node` (both counted from 1) does.
    pub fn draw(&self, node: u64, role: u64) -> Draw {
        let fail = unit(self.seed, node, role, Stream::Fail) < self.fail_rate;
        let delay = self
            .delay
            .seconds(unit(self.seed, node, role, Stream::Delay));
        Draw {
            fail,
            delay: (delay * 1000.0).round() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_parse_as_documented() {
        assert_eq!("0".parse(), Ok(Delay::Fixed(Duration::ZERO)));
        assert_eq!("200ms".parse(), Ok(Delay::Fixed(ms(200))));
        assert_eq!("2s".parse(), Ok(Delay::Fixed(ms(2000))));
        assert_eq!(
            "uniform:100ms..2s".parse(),
            Ok(Delay::Uniform(ms(100), ms(2000)))
        );
        assert_eq!("exp:500ms".parse(), Ok(Delay::Exponential(ms(500))));
        assert_eq!(" exp:1s ".parse(), Ok(Delay::Exponential(ms(1000))));
    }

    #[test]
    fn bad_delays_say_what_is_wrong() {
        let error = |text: &str| text.parse::<Delay>().unwrap_err();
        assert!(error("uniform:2s..1s").contains("minimum is larger"));
        assert!(error("uniform:1s").contains("uniform:MIN..MAX"));
        assert!(error("normal:1s").contains("unknown distribution `normal`"));
        assert!(error("fast").contains("not a duration"));
        assert!(error("exp:5y").contains("unknown unit"));
    }

    #[test]
    fn delays_print_as_they_parse() {
        for text in [
            "0",
            "200ms",
            "uniform:100ms..2s",
            "exp:500ms",
            "60s",
            "1500ms",
        ] {
            let delay: Delay = text.parse().unwrap();
            assert_eq!(delay.to_string(), text);
            assert_eq!(delay.to_string().parse::<Delay>(), Ok(delay));
        }
    }

    #[test]
    fn delays_follow_their_distribution() {
        let uniform = Delay::Uniform(ms(100), ms(2100));
        assert_eq!(uniform.seconds(0.0), 0.1);
        assert_eq!(uniform.seconds(0.5), 1.1);
        let exp = Delay::Exponential(ms(500));
        assert_eq!(exp.seconds(0.0), 0.0);
        assert!((exp.seconds(1.0 - (-1.0f64).exp()) - 0.5).abs() < 1e-9);
        assert!(exp.seconds(0.999_999_999).is_finite());
        assert_eq!(Delay::Fixed(ms(250)).seconds(0.9), 0.25);
    }

    #[test]
    fn rates_are_probabilities_or_percentages() {
        assert_eq!(parse_rate("0.02"), Ok(0.02));
        assert_eq!(parse_rate("2%"), Ok(0.02));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1"), Ok(1.0));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("often").is_err());
    }

    fn draws(seed: u64, fail_rate: f64) -> Draws {
        Draws {
            seed,
            fail_rate,
            delay: Delay::Uniform(ms(0), ms(1000)),
        }
    }

    /// The noderoles of a 200 x 5 fleet that fail.
    fn failures(draws: &Draws) -> Vec<(u64, u64)> {
        (1..=200)
            .flat_map(|node| (1..=5).map(move |role| (node, role)))
            .filter(|&(node, role)| draws.draw(node, role).fail)
            .collect()
    }

    #[test]
    fn a_noderole_draws_the_same_whenever_and_in_whatever_order_it_is_asked() {
        let d = draws(7, 0.2);
        let forward: Vec<Draw> = (1..=50).map(|n| d.draw(n, 3)).collect();
        let backward: Vec<Draw> = (1..=50).rev().map(|n| d.draw(n, 3)).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
        assert_eq!(failures(&d), failures(&draws(7, 0.2)));
    }

    #[test]
    fn the_draws_of_a_seed_never_change() {
        // pinned: a seed written down in a report must replay the same fleet in later
        // versions of crowbar
        let d = draws(7, 0.2);
        let failed: Vec<(u64, u64)> = (1..=10)
            .flat_map(|node| (1..=5).map(move |role| (node, role)))
            .filter(|&(node, role)| d.draw(node, role).fail)
            .collect();
        assert_eq!(
            failed,
            [
                (1, 1),
                (2, 2),
                (3, 1),
                (4, 4),
                (5, 2),
                (6, 2),
                (6, 5),
                (7, 1),
                (9, 1),
                (9, 2),
                (9, 3),
                (10, 2)
            ]
        );
        assert_eq!(
            d.draw(1, 1),
            Draw {
                fail: true,
                delay: 0.46
            }
        );
        // the rate decides failures only: delays stay
        assert_eq!(draws(7, 0.0).draw(1, 1).delay, 0.46);
    }

    #[test]
    fn seeds_nodes_and_roles_each_change_the_draw() {
        assert_ne!(failures(&draws(7, 0.2)), failures(&draws(8, 0.2)));
        let d = draws(7, 0.2);
        assert_ne!(d.draw(1, 2).delay, d.draw(2, 1).delay);
        assert_ne!(d.draw(1, 2).delay, d.draw(1, 3).delay);
    }

    #[test]
    fn the_fail_rate_is_kept_and_failure_does_not_decide_the_delay() {
        let failed = failures(&draws(11, 0.2)).len();
        // 1000 draws at p = 0.2: 200 expected, standard deviation ~12.6
        assert!((150..=250).contains(&failed), "{failed} of 1000 failed");
        assert!(failures(&draws(11, 0.0)).is_empty());
        assert_eq!(failures(&draws(11, 1.0)).len(), 1000);
        // a higher rate fails a superset: raising it never rescues a noderole
        let low = failures(&draws(11, 0.1));
        let high = failures(&draws(11, 0.3));
        assert!(low.iter().all(|nr| high.contains(nr)));
    }

    #[test]
    fn data_is_what_the_simulation_jig_reads() {
        let draw = Draw {
            fail: true,
            delay: 0.25,
        };
        assert_eq!(draw.data(), json!({"test": {"fail": true, "delay": 0.25}}));
    }
}

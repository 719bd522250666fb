//! How a scenario fails: an `Err` with a sentence saying what was expected and what came.

/// A scenario's (or one step's) result.
pub type Outcome<T> = Result<T, String>;

pub fn fail<T>(msg: impl Into<String>) -> Outcome<T> {
    Err(msg.into())
}

/// Fails the scenario with the message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// Fails the scenario unless `actual == expected`, naming both.
#[macro_export]
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($arg:tt)+) => {
        // `match` keeps temporaries alive for the comparison, as in `assert_eq!`.
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    return Err(format!(
                        "{}: expected {:?}, got {:?}",
                        format!($($arg)+),
                        expected,
                        actual
                    ));
                }
            }
        }
    };
}

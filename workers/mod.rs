//! The built-in workers. They are demos and test fixtures at once, so their behaviour is
//! fixed by PRODUCT.md: `echo`, `reverse`, `sleep`, `fail`, `exit` and `wordcount`.
//!
//! This directory sits at the top of the repository (the design card's layout) and is
//! compiled into the library as `geardriver::workers`.

mod echo;
mod exit;
mod fail;
mod reverse;
mod sleep;
mod wordcount;

pub use echo::Echo;
pub use exit::Exit;
pub use fail::Fail;
pub use reverse::Reverse;
pub use sleep::Sleep;
pub use wordcount::WordCount;

use crate::plugin::Registry;

/// Adds every built-in worker under its name.
pub fn register_builtins(registry: Registry) -> Registry {
    registry
        .register("echo", Echo)
        .register("exit", Exit)
        .register("fail", Fail)
        .register("reverse", Reverse)
        .register("sleep", Sleep)
        .register("wordcount", WordCount)
}

//! The built-in workers. They are demos and test fixtures at once, so their behaviour is
//! fixed by PRODUCT.md: `echo`, `reverse`, `sleep`, `fail`, `exit` and `wordcount`; more
//! serve the interoperability tests: `progress` (status, data and a warning before its
//! result), `block` (a job that blocks its thread, for timeouts) and `panic`; `state` shows a
//! custom scoreboard state while it sleeps.
//!
//! This directory sits at the top of the repository (the design card's layout) and is
//! compiled into the library as `geardriver::workers`.

mod block;
mod echo;
mod exit;
mod fail;
mod panic;
mod progress;
mod reverse;
mod sleep;
mod state;
mod wordcount;

pub use block::Block;
pub use echo::Echo;
pub use exit::Exit;
pub use fail::Fail;
pub use panic::Panic;
pub use progress::Progress;
pub use reverse::Reverse;
pub use sleep::Sleep;
pub use state::State;
pub use wordcount::WordCount;

use crate::plugin::Registry;

/// Adds every built-in worker under its name.
pub fn register_builtins(registry: Registry) -> Registry {
    registry
        .register("block", Block)
        .register("echo", Echo)
        .register("exit", Exit)
        .register("fail", Fail)
        .register("panic", Panic)
        .register("progress", Progress)
        .register("reverse", Reverse)
        .register("sleep", Sleep)
        .register("state", State)
        .register("wordcount", WordCount)
}

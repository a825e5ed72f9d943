//! The text admin protocol on arbitrary input: command lines (the server's side) and reply
//! lines for every command (the client's side) parse or are refused, never panic; a command
//! that parses formats back to a line that parses to the same command.
#![no_main]

use geardriver::gearman::admin::{AdminCommand, AdminError, AdminReply, MaxQueueLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(command) = AdminCommand::parse(&text) {
        let line = command.to_line();
        assert_eq!(AdminCommand::parse(line.trim_end()), Ok(command), "{line:?}");
    }
    let _ = AdminError::parse(&text);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for command in [
        AdminCommand::Status,
        AdminCommand::Workers,
        AdminCommand::Version,
        AdminCommand::Getpid,
        AdminCommand::ShowJobs,
        AdminCommand::ShowUniqueJobs,
        AdminCommand::PriorityStatus,
        AdminCommand::MaxQueue { function: "f".into(), limits: MaxQueueLimits::Default },
        AdminCommand::CancelJob { handle: "H:x:1".into() },
    ] {
        if let Ok(reply) = AdminReply::parse(&command, &lines) {
            let _ = reply.to_wire();
        }
    }
});

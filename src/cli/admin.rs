//! `geardriver admin`: one text admin command to a job server, its reply printed the way
//! gearmand sends it (list replies end with a `.` line, like `gearadmin`).

use super::{AdminArgs, Outcome};
use crate::gearman::{AdminClient, AdminCommand, AdminReply, ServerAddr};
use std::time::Duration;

pub async fn run(args: AdminArgs, server: ServerAddr) -> Outcome {
    let command = match AdminCommand::parse(&args.command.join(" ")) {
        Ok(command) => command,
        Err(e) => {
            return Outcome::Usage(format!(
                "unknown admin command {:?} ({e})",
                args.command.join(" ")
            ));
        }
    };
    let Ok(timeout) = Duration::try_from_secs_f64(args.timeout) else {
        return Outcome::Usage("--timeout must be a positive number of seconds".into());
    };
    let reply = async {
        let mut client = AdminClient::connect(&server, timeout).await?;
        client.execute(&command).await
    };
    match reply.await {
        Ok(reply) => {
            super::out(&render(&reply));
            Outcome::Success
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn render(reply: &AdminReply) -> String {
    match reply {
        AdminReply::Version(version) => format!("{version}\n"),
        AdminReply::Pid(pid) => format!("{pid}\n"),
        AdminReply::Ok => "OK\n".to_string(),
        list => list.to_wire(),
    }
}

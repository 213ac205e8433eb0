//! `persys login`, `logout`, `whoami` and `passwd`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use clap::Args;
use persys_client::Error;
use persys_proto::gateway::v1::{LogoutRequest, WhoAmIRequest, auth_service_client::AuthServiceClient};
use serde::Serialize;
use tonic::Code;

use crate::{
    client::{Global, Session},
    error::{Exit, Failure, fail},
    output::{self, emit},
    view,
};

/// Arguments of `persys login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name (prompted for when omitted on a terminal).
    #[arg(short, long, env = "PERSYS_USERNAME")]
    username: Option<String>,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

fn prompt_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

fn password(args: &LoginArgs) -> anyhow::Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "no terminal to ask for the password on: pipe it in with --password-stdin",
        )
        .into());
    }
    rpassword::prompt_password("Password: ").context("reading the password")
}

/// Logs in and stores the session for the server.
pub async fn login(global: &Global, args: LoginArgs) -> anyhow::Result<()> {
    let username = match &args.username {
        Some(u) => u.clone(),
        None if std::io::stdin().is_terminal() && !args.password_stdin => prompt_line("Username: ")?,
        None => return Err(Failure::new(Exit::Usage, "which user? pass --username NAME").into()),
    };
    let password = password(&args)?;
    let connection = global.connect()?;
    let store = global.store()?;
    let response =
        match tokio::time::timeout(global.timeout, persys_client::login(&connection, &store, &username, &password))
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(Error::Call(e))) if e.code() == Code::Unauthenticated => {
                return Err(Failure::new(Exit::Auth, format!("login failed: {}", e.message())).into());
            }
            Ok(Err(e)) => return Err(fail(e, &global.server).into()),
            Err(_) => {
                return Err(Failure::new(Exit::Timeout, format!("{} did not answer in time", global.server)).into());
            }
        };
    let role = response.user.as_ref().map(|u| view::role(u.role)).unwrap_or_default();
    eprintln!("logged in to {} as {username} ({role}); session saved in {}", global.server, store.path().display());
    Ok(())
}

/// Ends the session at the server and forgets it locally.
pub async fn logout(global: &Global) -> anyhow::Result<()> {
    let store = global.store()?;
    let Some(credentials) = store.get(&global.server).map_err(|e| fail(e, &global.server))? else {
        eprintln!("not logged in to {}", global.server);
        return Ok(());
    };
    let mut client = AuthServiceClient::new(global.connect()?.channel());
    let request = LogoutRequest { refresh_token: credentials.refresh_token };
    let revoked = tokio::time::timeout(global.timeout, client.logout(request)).await;
    store.remove(&global.server).map_err(|e| fail(e, &global.server))?;
    match revoked {
        Ok(Ok(_)) => eprintln!("logged out of {}", global.server),
        Ok(Err(s)) => eprintln!(
            "forgot the local session, but the server could not revoke it ({}); it ends when it expires",
            s.message()
        ),
        Err(_) => eprintln!("forgot the local session, but {} did not answer; it ends when it expires", global.server),
    }
    Ok(())
}

#[derive(Serialize)]
struct WhoAmI {
    server: String,
    id: String,
    username: String,
    role: String,
    disabled: bool,
    auth_method: String,
}

/// Prints who the gateway says the caller is.
pub async fn whoami(global: &Global) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let response = session.call(|c| async move { c.auth().who_am_i(WhoAmIRequest {}).await }).await?;
    let user = response.user.unwrap_or_default();
    let me = WhoAmI {
        server: session.server.clone(),
        id: user.id,
        username: user.username,
        role: view::role(user.role),
        disabled: user.disabled,
        auth_method: response.auth_method,
    };
    emit(global.output, &me, || {
        output::describe(&[
            ("User", me.username.clone()),
            ("ID", me.id.clone()),
            ("Role", me.role.clone()),
            ("Server", me.server.clone()),
            ("Auth", me.auth_method.clone()),
        ])
    })
}

/// Arguments of `persys passwd`.
#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// Read the current password and then the new one from the first two lines of standard
    /// input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// Changes the logged-in user's password; every other session of theirs ends, this one goes on.
pub async fn passwd(global: &Global, args: PasswdArgs) -> anyhow::Result<()> {
    if global.token.is_some() {
        return Err(Failure::new(
            Exit::Usage,
            "an API key cannot change its owner's password: run persys login, then persys passwd",
        )
        .into());
    }
    let (current, new) = if args.password_stdin {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = |what: &str| -> anyhow::Result<String> {
            Ok(lines
                .next()
                .transpose()
                .context("reading standard input")?
                .ok_or_else(|| Failure::new(Exit::Usage, format!("standard input ended before the {what} password")))?
                .trim_end_matches('\r')
                .to_owned())
        };
        (next("current")?, next("new")?)
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                Exit::Usage,
                "no terminal to ask for the passwords on: pipe them in (current, then new, one a line) with --password-stdin",
            )
            .into());
        }
        let current = rpassword::prompt_password("Current password: ").context("reading the password")?;
        let new =
            rpassword::prompt_password("New password (12 characters or more): ").context("reading the password")?;
        let again = rpassword::prompt_password("New password again: ").context("reading the password")?;
        if new != again {
            return Err(Failure::new(Exit::Usage, "the two new passwords differ; nothing was changed").into());
        }
        (current, new)
    };
    let session = Session::open(global)?;
    session.client().change_password(&current, &new).await.map_err(|e| fail(e, &global.server))?;
    eprintln!("password changed; every other session of yours on {} has ended", global.server);
    Ok(())
}

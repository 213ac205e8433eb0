//! `persys token`: join tokens that let machines join the cluster as nodes (admins).

use std::time::Duration;

use clap::Subcommand;
use persys_proto::{
    common::v1::PageRequest,
    scheduler::v1::{CreateJoinTokenRequest, ListJoinTokensRequest, RevokeJoinTokenRequest},
};
use serde::Serialize;

use crate::{
    client::{Global, Session},
    output::{Format, Table, age, dash, emit, now_secs},
    run, view,
};

/// `persys token ...`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a join token and print it (shown once).
    #[command(after_help = "A token lets one machine join unless --max-uses or --unlimited-uses says otherwise.\n\n\
                            Examples:\n  persys token create --ttl 2h --max-uses 3 --label rack=r4\n  \
                            persys token create --ttl 7d --unlimited-uses --description \"DaemonSet agents\"")]
    Create {
        /// How long the token is accepted (at most 7d).
        #[arg(long, default_value = "1h", value_parser = persys_kit::config::parse_duration)]
        ttl: Duration,
        /// Most machines that may join with it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        max_uses: i32,
        /// Let any number of machines join until it expires (e.g. agents of a DaemonSet).
        #[arg(long, conflicts_with = "max_uses")]
        unlimited_uses: bool,
        /// Label k=v given to every node that joins with it (repeatable).
        #[arg(short = 'l', long = "label", value_parser = run::key_value)]
        labels: Vec<(String, String)>,
        /// Free-text note, e.g. "rack 4 workers".
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List join tokens.
    #[command(visible_alias = "ls")]
    List {
        /// Include expired, used-up and revoked tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a join token (nodes that joined with it stay).
    Revoke {
        /// Token id (the part before the dot).
        id: String,
    },
}

#[derive(Serialize)]
struct Created {
    token: String,
    ca_cert_hash: String,
    join_token: view::JoinToken,
}

/// Runs a `token` subcommand.
pub async fn run(global: &Global, command: TokenCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        TokenCommand::Create { ttl, max_uses, unlimited_uses, labels, description } => {
            let req = &CreateJoinTokenRequest {
                description,
                ttl: ttl.try_into().ok(),
                max_uses: if unlimited_uses { 0 } else { max_uses },
                node_labels: labels.into_iter().collect(),
                unlimited_uses,
            };
            let answer = s.call(|c| async move { c.scheduler().create_join_token(req.clone()).await }).await?;
            let meta = answer.join_token.unwrap_or_default();
            if global.output == Format::Table {
                println!("{}", answer.token);
                let expires = view::JoinToken::from(&meta);
                let expires = serde_json::to_value(&expires)?["expires_at"].as_str().unwrap_or("-").to_owned();
                eprintln!(
                    "join token {} (expires {expires}); shown once. Give it to the new machine's agent \
                     (--join-token) with the cluster CA, whose hash is {}",
                    meta.id, answer.ca_cert_hash
                );
                return Ok(());
            }
            let created =
                Created { token: answer.token, ca_cert_hash: answer.ca_cert_hash, join_token: (&meta).into() };
            emit(global.output, &created, String::new)
        }
        TokenCommand::List { all } => {
            let mut tokens = Vec::new();
            let mut page_token = String::new();
            loop {
                let req = &ListJoinTokensRequest {
                    page: Some(PageRequest { page_size: 1000, page_token: page_token.clone() }),
                    include_inactive: all,
                };
                let page = s.call(|c| async move { c.scheduler().list_join_tokens(req.clone()).await }).await?;
                tokens.extend(page.join_tokens);
                page_token = page.page.map(|p| p.next_page_token).unwrap_or_default();
                if page_token.is_empty() {
                    break;
                }
            }
            let views: Vec<view::JoinToken> = tokens.iter().map(view::JoinToken::from).collect();
            emit(global.output, &views, || {
                let now = now_secs();
                let mut t = Table::new(&["ID", "USES", "EXPIRES IN", "STATE", "DESCRIPTION", "AGE"]);
                for tk in &tokens {
                    let expires = tk.expires_at.as_ref().map_or(0, |e| e.seconds);
                    let state = if tk.revoked_at.is_some() {
                        "revoked"
                    } else if expires != 0 && expires <= now {
                        "expired"
                    } else if tk.max_uses != 0 && tk.use_count >= tk.max_uses {
                        "used up"
                    } else {
                        "active"
                    };
                    let uses = if tk.max_uses == 0 {
                        format!("{}/-", tk.use_count)
                    } else {
                        format!("{}/{}", tk.use_count, tk.max_uses)
                    };
                    let left = if expires > now { crate::output::duration(expires - now) } else { "-".into() };
                    t.row(vec![
                        tk.id.clone(),
                        uses,
                        left,
                        state.into(),
                        dash(&tk.description),
                        age(tk.created_at.as_ref(), now),
                    ]);
                }
                t.to_string()
            })
        }
        TokenCommand::Revoke { id } => {
            let req = &RevokeJoinTokenRequest { id: id.split('.').next().unwrap_or_default().to_owned() };
            s.call(|c| async move { c.scheduler().revoke_join_token(req.clone()).await }).await?;
            eprintln!("join token {} revoked", req.id);
            Ok(())
        }
    }
}

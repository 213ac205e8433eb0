//! Commands on servers (ChatOps) end to end with every real part: an admin asks the gateway,
//! the metrics pipeline decides and keeps the history in real PostgreSQL, the real scheduler
//! relays down the agent's stream, and the real agent applies its own allow-list, timeout and
//! process-group kill on this machine, and acts on real Docker containers.

use std::time::{Duration, SystemTime};

use persys_e2e::{
    cluster::{Cluster, ClusterOptions},
    stack::{ADMIN, ADMIN_PASSWORD, bearer},
};
use persys_kit::{client::TracedChannel, testing::require_env};
use persys_proto::{
    common::v1::{PageRequest, Role},
    gateway::v1::{
        CreateUserRequest, LoginRequest, auth_service_client::AuthServiceClient, user_service_client::UserServiceClient,
    },
    metrics::v1::{
        CommandRecord, CommandStatus, DockerActionRequest, DockerActionType, ListCommandHistoryRequest,
        ListContainersRequest, RunCommandRequest, command_service_client::CommandServiceClient, docker_action_response,
        run_command_response,
    },
    scheduler::v1::{
        CreateJoinTokenRequest, CreateWorkloadRequest, ImagePullPolicy, ListNodesRequest, WorkloadSpec,
        scheduler_service_client::SchedulerServiceClient,
    },
};
use tonic::{Code, service::interceptor::InterceptedService};

type Commands = CommandServiceClient<InterceptedService<TracedChannel, persys_e2e::stack::Bearer>>;

async fn login(channel: &TracedChannel, user: &str, password: &str) -> String {
    AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: user.into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// What one RunCommand gave: the started record, the output, the final record.
struct Ran {
    started: CommandRecord,
    output: String,
    finished: CommandRecord,
}

async fn run(client: &mut Commands, request: RunCommandRequest) -> Result<Ran, tonic::Status> {
    let mut stream = client.run_command(request).await?.into_inner();
    let (mut started, mut output) = (None, Vec::new());
    while let Some(message) = stream.message().await? {
        match message.payload {
            Some(run_command_response::Payload::Started(r)) => started = Some(r),
            Some(run_command_response::Payload::Output(chunk)) => output.extend(chunk.data),
            Some(run_command_response::Payload::Finished(r)) => {
                let started = started.expect("the started record comes first");
                return Ok(Ran { started, output: String::from_utf8_lossy(&output).into_owned(), finished: r });
            }
            None => {}
        }
    }
    panic!("the stream ended without the final record")
}

fn argv(node: &str, args: &[&str]) -> RunCommandRequest {
    RunCommandRequest {
        node_id: node.into(),
        argv: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
        ..Default::default()
    }
}

fn status(r: &CommandRecord) -> CommandStatus {
    CommandStatus::try_from(r.status).unwrap()
}

fn docker(docker_host: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("docker").env("DOCKER_HOST", docker_host).args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_run_what_the_node_allows_and_every_command_is_kept_in_the_history() {
    let (Some(database_url), Some(docker_host), Some(image)) = (
        require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL"),
        require_env("DOCKER_HOST", "a Docker engine"),
        require_env("PERSYS_TEST_IMAGE", "a local test image"),
    ) else {
        return;
    };
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("e2e_commands_{nanos:x}");
    let cluster =
        Cluster::start(ClusterOptions { metrics: Some((database_url, schema)), ..Default::default() }).await.unwrap();
    let channel = persys_kit::client::plain_channel(&cluster.url(), &Default::default()).unwrap();
    let admin_token = login(&channel, ADMIN, ADMIN_PASSWORD).await;
    let member = UserServiceClient::with_interceptor(channel.clone(), bearer(&admin_token))
        .create_user(CreateUserRequest {
            username: "operator".into(),
            password: "a-long-enough-password".into(),
            role: Role::Member as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let member_token = login(&channel, "operator", "a-long-enough-password").await;
    let mut scheduler = SchedulerServiceClient::with_interceptor(channel.clone(), bearer(&admin_token));
    let mut admin = CommandServiceClient::with_interceptor(channel.clone(), bearer(&admin_token));
    let mut as_member = CommandServiceClient::with_interceptor(channel.clone(), bearer(&member_token));

    // The node allows echo, env and sleep, and no shell.
    let join = scheduler.create_join_token(CreateJoinTokenRequest::default()).await.unwrap().into_inner().token;
    let name = format!("chatops-{:x}", nanos % 0xffff_ffff);
    let agent =
        cluster.agent_with(&name, &join, &docker_host, &["--host-commands", "echo,env,/bin/sleep"]).await.unwrap();
    let node = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let nodes = scheduler.list_nodes(ListNodesRequest::default()).await.unwrap().into_inner().nodes;
            if let Some(n) = nodes.into_iter().find(|n| n.hostname == name) {
                return n.id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the agent did not join; its log:\n{}", agent.log()));

    // Allowed: the output streams back and the exit code is the command's. The node may not
    // be connected the moment it is listed: UNAVAILABLE is retried until it is.
    let hello = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match run(&mut admin, argv(&node, &["echo", "hello", "from", "the node"])).await {
                Ok(ran)
                    if status(&ran.finished) == CommandStatus::Failed
                        && ran.finished.error_message.contains("not connected") => {}
                Ok(ran) => return ran,
                Err(s) if s.code() == Code::Unavailable => {}
                Err(s) => panic!("{s:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the node never took a command; agent log:\n{}", agent.log()));
    assert_eq!(status(&hello.started), CommandStatus::Running);
    assert_eq!(status(&hello.finished), CommandStatus::Completed, "{:?}", hello.finished);
    assert_eq!(hello.output, "hello from the node\n");
    assert_eq!(hello.finished.exit_code, Some(0));
    assert_eq!(hello.finished.command, "echo hello from 'the node'");
    assert_eq!(hello.finished.output_tail, hello.output);
    assert_eq!(hello.finished.output_bytes, hello.output.len() as i64);

    // The command sees nothing of the agent's environment.
    let env = run(&mut admin, argv(&node, &["env"])).await.unwrap();
    let mut names: Vec<&str> = env.output.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    names.sort_unstable();
    assert_eq!(names, ["HOME", "LANG", "PATH"], "{}", env.output);

    // Not on the node's list, or a shell line where the node allows none: refused by the
    // agent, nothing run.
    let cat = run(&mut admin, argv(&node, &["cat", "/etc/hostname"])).await.unwrap();
    assert_eq!(status(&cat.finished), CommandStatus::Rejected, "{:?}", cat.finished);
    assert!(cat.finished.error_message.contains("not in this node's allowed host commands"), "{:?}", cat.finished);
    assert!(cat.finished.error_message.starts_with("`/"), "the agent's sentence, no reason code: {:?}", cat.finished);
    assert!(cat.output.is_empty() && cat.finished.exit_code.is_none());
    let shell = RunCommandRequest { argv: Vec::new(), shell: "echo hi".into(), ..argv(&node, &[]) };
    let shell = run(&mut admin, shell).await.unwrap();
    assert_eq!(status(&shell.finished), CommandStatus::Rejected);
    assert!(shell.finished.error_message.contains("--host-shell"), "{:?}", shell.finished);

    // Over its timeout: killed, and said so.
    let slow = RunCommandRequest {
        timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..argv(&node, &["sleep", "120"])
    };
    let slow = run(&mut admin, slow).await.unwrap();
    assert_eq!(status(&slow.finished), CommandStatus::TimedOut, "{:?}", slow.finished);
    assert!(slow.finished.duration.unwrap().seconds < 60, "{:?}", slow.finished);

    // A member may not, and is told so; the attempt is kept.
    let denied = run(&mut as_member, argv(&node, &["echo", "hi"])).await.err().expect("a member is refused");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Bad input names the field.
    let bad = run(&mut admin, RunCommandRequest { node_id: node.clone(), ..Default::default() }).await.err().unwrap();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("argv"), "{bad:?}");

    // Docker actions: a container that is not Persys's can be stopped and started; a Persys
    // instance's can only be read.
    let outside = format!("outside-{:x}", nanos % 0xffff_ffff);
    let outside_id = docker(
        &docker_host,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &outside,
            &image,
            "sh",
            "-c",
            "echo outside says hi; exec sleep 600",
        ],
    );
    let action = |a: DockerActionType, container: &str| DockerActionRequest {
        node_id: node.clone(),
        container_id: container.to_owned(),
        action: a as i32,
        grace_period: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    };
    async fn act(client: &mut Commands, r: DockerActionRequest) -> Result<(String, String), tonic::Status> {
        let mut stream = client.docker_action(r).await?.into_inner();
        let mut output = Vec::new();
        while let Some(m) = stream.message().await? {
            match m.payload {
                Some(docker_action_response::Payload::Output(c)) => output.extend(c.data),
                Some(docker_action_response::Payload::Result(r)) => {
                    return Ok((r.state, String::from_utf8_lossy(&output).into_owned()));
                }
                None => {}
            }
        }
        panic!("no result")
    }
    let (state, _) = act(&mut admin, action(DockerActionType::Stop, &outside)).await.unwrap();
    assert_eq!(state, "exited");
    assert_eq!(docker(&docker_host, &["inspect", "-f", "{{.State.Status}}", &outside_id]), "exited");
    let (state, _) = act(&mut admin, action(DockerActionType::Start, &outside_id[..12])).await.unwrap();
    assert_eq!(state, "running");
    let (_, logs) = act(&mut admin, action(DockerActionType::Logs, &outside)).await.unwrap();
    assert!(logs.contains("outside says hi"), "{logs:?}");
    let short = act(&mut admin, action(DockerActionType::Stop, &outside_id[..6])).await.err().unwrap();
    assert_eq!(short.code(), Code::NotFound, "a 6-character prefix names nothing: {short:?}");
    let by_member = act(&mut as_member, action(DockerActionType::Stop, &outside)).await.err().unwrap();
    assert_eq!(by_member.code(), Code::PermissionDenied);
    assert_eq!(docker(&docker_host, &["inspect", "-f", "{{.State.Status}}", &outside_id]), "running");

    let w = scheduler
        .create_workload(CreateWorkloadRequest {
            name: "managed".into(),
            spec: Some(WorkloadSpec {
                image: image.clone(),
                command: vec!["sh".into(), "-c".into(), "echo managed here; exec sleep 600".into()],
                image_pull_policy: ImagePullPolicy::Never as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    // The instance's container, as the node's metrics list it.
    let managed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let list = admin
                .list_containers(ListContainersRequest { node_id: node.clone(), page: None })
                .await
                .map(|r| r.into_inner().containers)
                .unwrap_or_default();
            if let Some(c) = list.into_iter().find(|c| c.workload_id == w.id) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the workload's container was never listed; agent log:\n{}", agent.log()));
    let refused = act(&mut admin, action(DockerActionType::Stop, &managed.container_id)).await.err().unwrap();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let (_, logs) = act(&mut admin, action(DockerActionType::Logs, &managed.container_id)).await.unwrap();
    assert!(logs.contains("managed here"), "{logs:?}");
    docker(&docker_host, &["rm", "-f", &outside_id]);

    // The history: every command and action, newest first, none left running, each with who
    // asked; members may not read it.
    let history = admin
        .list_command_history(ListCommandHistoryRequest { node_id: node.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .commands;
    let summary: Vec<(String, CommandStatus)> = history.iter().rev().map(|r| (r.command.clone(), status(r))).collect();
    let want = [
        ("echo hello from 'the node'", CommandStatus::Completed),
        ("env", CommandStatus::Completed),
        ("cat /etc/hostname", CommandStatus::Rejected),
        ("echo hi", CommandStatus::Rejected),
        ("sleep 120", CommandStatus::TimedOut),
        ("echo hi", CommandStatus::Rejected),
    ];
    let commands_only: Vec<(String, CommandStatus)> =
        summary.iter().filter(|(c, _)| !c.starts_with("docker ")).cloned().collect();
    // Attempts while the node was still connecting may come first, FAILED.
    let first = commands_only.iter().position(|(c, s)| c == want[0].0 && *s == want[0].1).expect("hello is kept");
    assert!(commands_only[..first].iter().all(|(_, s)| *s == CommandStatus::Failed), "{summary:?}");
    let kept: Vec<(&str, CommandStatus)> = commands_only[first..].iter().map(|(c, s)| (c.as_str(), *s)).collect();
    assert_eq!(kept, want, "{summary:?}");
    assert!(history.iter().all(|r| status(r) != CommandStatus::Running && r.completed_at.is_some()), "{history:?}");
    let by_member: Vec<&CommandRecord> = history.iter().filter(|r| r.user_id == member.id).collect();
    assert_eq!(by_member.len(), 2, "the member's command and docker action: {summary:?}");
    assert!(by_member.iter().all(|r| status(r) == CommandStatus::Rejected));
    assert!(by_member.iter().all(|r| r.username == "operator"), "kept with the user's name: {by_member:?}");
    let docker_kept: Vec<(String, CommandStatus)> =
        summary.iter().filter(|(c, _)| c.starts_with("docker ")).cloned().collect();
    assert_eq!(docker_kept.len(), 7, "{docker_kept:?}");
    assert!(docker_kept.contains(&(format!("docker stop {outside}"), CommandStatus::Completed)), "{docker_kept:?}");
    assert!(
        docker_kept.contains(&(format!("docker stop {}", managed.container_id), CommandStatus::Rejected)),
        "{docker_kept:?}"
    );

    // Paging walks the same records.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_command_history(ListCommandHistoryRequest {
                page: Some(PageRequest { page_size: 3, page_token: token }),
                node_id: node.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.commands.into_iter().map(|c| c.id));
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, history.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
    let denied = as_member.list_command_history(ListCommandHistoryRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

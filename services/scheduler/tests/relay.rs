//! Relays of command output (issue 9, item 4): a caller that stops reading its `logs -f` never
//! holds up the agent's stream, which also carries its heartbeats and status reports. The slow
//! call is cut with RESOURCE_EXHAUSTED and canceled on the agent; the node stays Ready.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use persys_proto::{
    common::v1::{OutputChunk, OutputStream},
    scheduler::v1::{self as pb, connect_request, connect_response::Payload},
};
use persys_scheduler::{
    agents::CALL_BUFFER,
    kv::{Kv, mem::MemKv},
    testing::assert_invariants,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_and_the_node_stays_ready() {
    let pki = Pki::new();
    let s = serve(Arc::new(MemKv::new()), config(&pki, "/persys", &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let token = token(&mut admin).await;
    let mut agent = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, "worker-1").await;
    let w = admin
        .create_workload(pb::CreateWorkloadRequest {
            name: "chatty".into(),
            spec: Some(pb::WorkloadSpec {
                image: "busybox".into(),
                replicas: 1,
                restart_policy: pb::RestartPolicy::Never as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    let (_, run) = agent.next_command().await;
    let Payload::Run(run) = run else { panic!("expected a run command, got {run:?}") };
    agent.report(&w.id, &run.instance_id, pb::WorkloadPhase::Running, None).await;
    wait_workload(&mut admin, &w.id, |w| phase(w) == pb::WorkloadPhase::Running).await;

    // `logs -f`, then the reader pauses: nothing is read from the response.
    let mut logs = admin
        .stream_logs(pb::StreamLogsRequest { workload_id: w.id.clone(), follow: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let (command_id, fetch) = agent.next_command().await;
    let Payload::Logs(fetch) = fetch else { panic!("expected a logs command, got {fetch:?}") };
    assert!(fetch.follow);

    // The agent keeps sending output (far more than the call's buffer and every transport
    // window in between), its heartbeats go on meanwhile. Each send waits until the scheduler
    // takes the message off the stream: if a relay blocked the stream, this would hang.
    let data = vec![b'x'; 16 << 10];
    let sending = async {
        for _ in 0..(CALL_BUFFER * 4) {
            let chunk = OutputChunk { stream: OutputStream::Stdout as i32, data: data.clone(), time: None };
            agent
                .send(pb::ConnectRequest {
                    payload: Some(connect_request::Payload::LogChunk(pb::LogChunk {
                        command_id: command_id.clone(),
                        chunk: Some(chunk),
                    })),
                })
                .await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), sending)
        .await
        .expect("the agent's stream stalled behind a slow reader");

    // The stream still carries reports: a status change is recorded.
    agent.report(&w.id, &run.instance_id, pb::WorkloadPhase::Failed, Some(3)).await;
    wait_workload(&mut admin, &w.id, |w| phase(w) == pb::WorkloadPhase::Failed).await;

    // The agent was told to cancel the relayed command.
    let cancel = loop {
        match agent.next_command().await {
            (_, Payload::Cancel(c)) => break c,
            _ => continue,
        }
    };
    assert_eq!(cancel.target_command_id, command_id);

    // The reader, resuming, gets what was buffered, then the reason it was cut.
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match logs.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the cut call ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the cut call ends");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("fell behind"), "{status:?}");

    // Heartbeats kept the node alive throughout: Ready, its liveness key present.
    let node =
        admin.get_node(pb::GetNodeRequest { id: agent.node_id.clone() }).await.unwrap().into_inner().node.unwrap();
    assert_eq!(node.state(), pb::NodeState::Ready);
    let sched = &s.running.sched;
    assert!(sched.store.kv().get(&sched.keys().live(&agent.node_id)).await.unwrap().is_some());
    assert_invariants(&sched.store).await;
}

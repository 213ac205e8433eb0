mod common;
use std::sync::Arc;
use persys_gateway::{accounts::{Accounts, Policy}, auth::TokenKeys, ratelimit::Rate};
use persys_kit::identity::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_race() {
    common::on_postgres(|store| async move {
        let h = std::time::Duration::from_secs(3600);
        let p = Policy { login_per_user: Rate { burst: 1000, period: h }, login_per_peer: Rate { burst: 1000, period: h }, ..Policy::default() };
        let a = Arc::new(Accounts::new(Arc::new(store), TokenKeys::new(&[7; 32]), p));
        a.create_user("ada", "correct horse battery", Role::Member).await.unwrap();
        let mut survived = 0;
        for _ in 0..20 {
            let s = a.login("ada", "correct horse battery", "p").await.unwrap();
            let tasks: Vec<_> = (0..2).map(|_| { let a = a.clone(); let t = s.refresh_token.clone(); tokio::spawn(async move { a.refresh(&t, "p").await }) }).collect();
            let mut winners = Vec::new();
            for t in tasks { if let Ok(w) = t.await.unwrap() { winners.push(w) } }
            assert_eq!(winners.len(), 1);
            if a.refresh(&winners[0].refresh_token, "p").await.is_ok() { survived += 1 }
        }
        eprintln!("RACE: winner's rotated token survived a detected reuse in {survived}/20 rounds");
    }).await;
}

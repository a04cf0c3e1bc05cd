//! The change-mode title lock on SQLite: one process owns the store, so an in-process lock per
//! title suffices. Gates with different titles search and create their CRs side by side; a
//! title is forgotten once nobody holds or waits for it, so the map stays as small as the
//! searches in flight.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::store::TitleLock;

/// The titles being searched, each with its lock.
#[derive(Default)]
pub(super) struct Titles(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// A title's lock while held: forgets the title when it is the last holder or waiter.
struct Held {
    titles: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    title: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut titles = self.titles.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map's own reference left: nobody holds or waits for this title.
        if titles
            .get(&self.title)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            titles.remove(&self.title);
        }
    }
}

impl Titles {
    pub(super) async fn lock(&self, title: &str) -> TitleLock {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(title.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        TitleLock::new(Held {
            titles: self.0.clone(),
            title: title.to_string(),
            guard: Some(guard),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_title_waits_for_itself_other_titles_do_not_and_forgotten_when_free() {
        let titles = Arc::new(Titles::default());
        let a = titles.lock("Deploy shop to Production").await;
        // Another title is taken at once.
        let b = tokio::time::timeout(Duration::from_secs(1), titles.lock("Deploy billing"))
            .await
            .expect("another title does not wait");
        // The same title waits until the first holder lets go.
        let again = {
            let titles = titles.clone();
            tokio::spawn(async move { titles.lock("Deploy shop to Production").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!again.is_finished(), "the same title waits");
        drop(a);
        let again = tokio::time::timeout(Duration::from_secs(1), again)
            .await
            .expect("taken once the first holder let go")
            .unwrap();
        assert_eq!(titles.len(), 2);
        drop(again);
        drop(b);
        assert_eq!(titles.len(), 0, "titles nobody holds are forgotten");
    }
}

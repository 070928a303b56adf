//! A progress bar on stderr while a scenario runs (hidden when stderr is not a terminal).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::load::Progress;

/// Runs `work` while a bar shows elapsed time, completed requests and errors.
pub fn with_bar<T>(
    label: &str,
    total: Duration,
    progress: &Arc<Progress>,
    work: impl FnOnce() -> T,
) -> T {
    let bar = ProgressBar::new(total.as_millis().try_into().unwrap_or(u64::MAX));
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    std::thread::scope(|scope| {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let (bar, done, progress) = (bar.clone(), done.clone(), progress.clone());
            scope.spawn(move || {
                let started = std::time::Instant::now();
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(started.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
                    bar.set_message(format!(
                        "{} ok, {} errors",
                        progress.completed.load(Ordering::Relaxed),
                        progress.errors.load(Ordering::Relaxed)
                    ));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let out = work();
        done.store(true, Ordering::Relaxed);
        let _ = ticker.join();
        bar.finish_and_clear();
        out
    })
}

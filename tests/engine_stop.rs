//! The engine's stop flag: what the inspector sets when the user quits in the middle of a slow
//! method, so the engine thread lets go of ONNX Runtime after the run in progress.

mod common;

use std::sync::atomic::Ordering;

use camscope::cam::Method;
use camscope::engine::{Device, Engine, EngineConfig, Seed, SessionOptions};

#[test]
fn a_set_stop_flag_fails_the_runs_that_follow_and_clearing_it_resumes() {
    let session = SessionOptions { device: Device::Cpu, ..SessionOptions::default() };
    let mut e = Engine::open(&common::bundled_model(), None, EngineConfig { session, ..EngineConfig::default() })
        .expect("bundled model");
    let coffee = common::root().join("samples/espresso/coffee.png");
    let loaded = e.load(&coffee).unwrap();
    let stop = e.stop_flag();
    stop.store(true, Ordering::Relaxed);

    // Score-CAM's masked runs and the plain model on a new image both refuse to start.
    let err = e.map(&loaded, Method::ScoreCam, &Seed::Class(loaded.scores.argmax())).unwrap_err().to_string();
    assert!(err.contains("not started because camscope is stopping"), "{err}");
    let other = common::root().join("samples/missile/rocket.jpg");
    let err = e.load(&other).unwrap_err().to_string();
    assert!(err.contains("camscope is stopping"), "{err}");

    stop.store(false, Ordering::Relaxed);
    let map = e.map(&loaded, Method::GradCam, &Seed::Class(loaded.scores.argmax())).unwrap();
    assert!(map.normalized.map.iter().any(|&v| v > 0.0));
    assert!(e.load(&other).is_ok());
}

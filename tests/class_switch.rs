//! Issue 10's class switch: the inspector computes the shown image's other top classes in
//! the background (`Engine::warm`), so a switch among them costs only the map. Warmed maps
//! must equal cold ones exactly, the cache must follow the image, the layer and the score
//! kind, and a budget of 0 turns it off.

mod common;

use camscope::cam::Method;
use camscope::engine::{Engine, EngineConfig, Seed};
use camscope::grad::ScoreKind;

fn engine(cache_bytes: usize) -> Engine {
    Engine::open(&common::bundled_model(), None, EngineConfig { cache_bytes, ..EngineConfig::default() }).unwrap()
}

#[test]
fn warmed_classes_give_the_same_maps_and_the_cache_follows_its_keys() {
    let img = common::sample("tabby/chelsea.png");
    let mut cold = engine(0);
    let l = cold.load(&img).unwrap();
    let top5 = l.scores.top_k_indices(5);
    let want: Vec<_> =
        top5.iter().map(|&c| cold.map(&l, Method::GradCam, &Seed::Class(c)).unwrap().normalized.map).collect();
    assert_eq!(cold.warm(&l, &top5).unwrap(), 0, "a budget of 0 caches nothing");

    let mut warm = engine(EngineConfig::default().cache_bytes);
    let l = warm.load(&img).unwrap();
    assert_eq!(warm.warm(&l, &top5).unwrap(), 5);
    assert_eq!(warm.warm(&l, &top5).unwrap(), 0, "already warm");
    for (&c, want) in top5.iter().zip(&want) {
        let got = warm.map(&l, Method::GradCam, &Seed::Class(c)).unwrap();
        assert_eq!(&got.normalized.map, want, "class {c}: a warmed map equals a cold one");
        assert!(got.timings.head_ms < 5.0, "class {c}: the head came from the cache ({} ms)", got.timings.head_ms);
    }
    // Another image, another score kind or another layer: computed again.
    let other = warm.load(&common::sample("espresso/coffee.png")).unwrap();
    assert_eq!(warm.warm(&other, &top5[..1]).unwrap(), 1);
    warm.set_score(ScoreKind::Prob).unwrap();
    assert_eq!(warm.warm(&l, &top5).unwrap(), 5, "the score kind changes every gradient");
    let layer = warm.model().analysis.candidates()[0].tensor.clone();
    warm.set_layer(Some(&layer)).unwrap();
    let l = warm.load(&img).unwrap();
    assert_eq!(warm.warm(&l, &top5).unwrap(), 5, "another layer changes every gradient");
}

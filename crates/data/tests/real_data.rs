//! The shared datasets load with the counts their SOURCE.txt files state.

use std::path::{Path, PathBuf};

use hsuga_data::formats::steam_games;
use hsuga_data::{DatasetConfig, DatasetStats, Phase, candidates, prepare};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(name: &str, cache: &Path) -> hsuga_data::Prepared {
    let cfg = DatasetConfig::load(&repo().join(format!("configs/datasets/{name}.toml"))).unwrap();
    prepare(&cfg, cache).unwrap()
}

#[test]
fn fashion_matches_source() {
    let cache = tempfile::tempdir().unwrap();
    let p = load("fashion", cache.path());
    let s = DatasetStats::of(&p);
    assert_eq!((s.users, s.items, s.interactions), (9094, 4722, 34759));
    assert_eq!(s.dropped_users, 0);
    // Raw ids are kept: user 1's first items are 1, 2, 3.
    assert_eq!(&p.dataset.sequences[0][..3], &[1, 2, 3]);
    assert_eq!(s.head_users, 1819); // round(0.2 · 9094)
    assert_eq!(s.head_items, 944); // round(0.2 · 4722)
}

/// SASRec.pytorch's `data_partition` evaluates only users with at least 4
/// interactions: 3,959 of Fashion's 9,094 (`awk` over inter.txt agrees).
#[test]
fn fashion_with_sasrec_pytorch_partition_evaluates_3959_users() {
    let cache = tempfile::tempdir().unwrap();
    let path = repo().join("configs/datasets/fashion.toml");
    let all = prepare(&DatasetConfig::load(&path).unwrap(), cache.path()).unwrap();
    let mut cfg = DatasetConfig::load(&path).unwrap();
    cfg.split.min_eval_interactions = Some(4);
    let p = prepare(&cfg, cache.path()).unwrap();
    assert_ne!(p.dir, all.dir, "the setting must key the cache");
    // The shipped config for that protocol is Fashion with this one setting.
    let shipped =
        DatasetConfig::load(&repo().join("configs/datasets/fashion-sasrec-pytorch.toml")).unwrap();
    assert_eq!(shipped.split, cfg.split);
    assert_eq!(shipped.input_files(), cfg.input_files());
    assert_eq!(p.split.num_users(), 9094);
    assert_eq!(p.split.num_evaluated(), 3959);
    assert_eq!(DatasetStats::of(&p).evaluated_users, 3959);
    assert_eq!(all.split.num_evaluated(), 9094);
    let mut trained = 0;
    for (u, seq) in p.dataset.sequences.iter().enumerate() {
        assert_eq!(p.split.is_evaluated(u), seq.len() >= 4, "user {u}");
        if p.split.is_evaluated(u) {
            // Evaluated users split exactly as without the filter.
            assert_eq!(p.split.train[u], all.split.train[u]);
            assert_eq!(p.split.test[u], all.split.test[u]);
        } else {
            assert_eq!(&p.split.train[u], seq, "user {u} trains on everything");
        }
        trained += p.split.train[u].len();
    }
    // 34,759 interactions minus two held out per evaluated user.
    assert_eq!(trained, 34759 - 2 * 3959);
    // Evaluated users get the same negatives as under the default protocol.
    let (a, b) = (
        candidates(&all, 100, 42).unwrap(),
        candidates(&p, 100, 42).unwrap(),
    );
    for u in p.split.evaluated_users() {
        assert_eq!(a.negatives(Phase::Test, u), b.negatives(Phase::Test, u));
    }
}

#[test]
fn steam_drops_the_49_short_users() {
    let cache = tempfile::tempdir().unwrap();
    let p = load("steam", cache.path());
    let r = &p.dataset.report;
    assert_eq!(
        (r.raw_users, r.raw_items, r.raw_interactions),
        (23310, 5237, 316190)
    );
    assert_eq!(r.dropped_users, 49);
    assert_eq!(r.dropped_user_lengths, vec![(1, 4), (2, 45)]);
    assert_eq!(r.dropped_interactions, 4 + 2 * 45);
    assert_eq!(p.dataset.num_users(), 23261);
    // Cached reload gives the same thing.
    let again = load("steam", cache.path());
    assert_eq!(again.split, p.split);
}

#[test]
fn beauty_has_titles_for_every_item() {
    let cache = tempfile::tempdir().unwrap();
    let p = load("beauty", cache.path());
    let s = DatasetStats::of(&p);
    assert_eq!((s.users, s.items, s.interactions), (22363, 12101, 198502));
    let titled = p
        .dataset
        .item_attrs
        .iter()
        .filter(|a| a.title.is_some())
        .count();
    // SOURCE.txt: 7 products have an empty name.
    assert!(titled >= 12101 - 7, "{titled}");
    assert_eq!(p.dataset.report.items_without_attributes, 0);
}

#[test]
fn ml100k_is_time_ordered_with_attributes() {
    let cache = tempfile::tempdir().unwrap();
    let p = load("ml-100k", cache.path());
    let s = DatasetStats::of(&p);
    assert_eq!((s.users, s.items, s.interactions), (943, 1682, 100000));
    let toy = p.dataset.attrs(1).unwrap();
    assert_eq!(toy.title.as_deref(), Some("Toy Story"));
    assert_eq!(toy.year.as_deref(), Some("1995"));
    assert_eq!(toy.genres, vec!["Animation", "Children's", "Comedy"]);
    let c = candidates(&p, 100, 42).unwrap();
    for u in 0..p.split.num_users() {
        let seen = p.split.interacted(u);
        assert!(
            c.negatives(Phase::Test, u)
                .iter()
                .all(|i| *i != 0 && !seen.contains(i))
        );
    }
    // Second call reads the stored candidates: identical.
    assert_eq!(candidates(&p, 100, 42).unwrap(), c);
}

#[test]
fn steam_catalogue_reads_games_and_skips_padding() {
    // Fetched beside the Steam split when the machine lacks it.
    let steam = DatasetConfig::load(&repo().join("configs/datasets/steam.toml")).unwrap();
    let (games, report) = steam_games::read(&steam.data_dir.join("steam_games.json.gz")).unwrap();
    assert_eq!(report.rows, 120445);
    assert_eq!(report.padding_rows, 88312);
    assert_eq!(games.len() + report.duplicate_ids, 32133);
    assert_eq!(games.len(), 32132);
    let exit2 = &games["658870"];
    assert_eq!(exit2.genres, vec!["Casual", "Indie"]);
    assert!(exit2.specs.contains(&"Single-player".to_string()));
}

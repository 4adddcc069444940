//! Readers for every supported file format, each into the common raw shape.

pub mod amazon;
pub mod id_map_lookup;
pub mod lenient_json;
pub mod lines;
pub mod movielens;
pub mod plain;
pub mod recbole;
pub mod steam_games;
pub mod steam_reviews;

use crate::config::{InteractionSource, ItemSource};
use crate::error::Result;
use crate::raw::{RawItemTable, RawLog};

pub fn read_interactions(src: &InteractionSource) -> Result<RawLog> {
    match src {
        InteractionSource::UserItem { path, numeric_ids } => {
            plain::read_user_item(path, *numeric_ids)
        }
        InteractionSource::UserSequence { path } => plain::read_user_sequence(path),
        InteractionSource::Recbole { path } => recbole::read_inter(path),
        InteractionSource::AmazonReviews { path } => amazon::read_reviews(path),
        InteractionSource::Movielens { path } => movielens::read_ratings(path),
        InteractionSource::SteamReviews { path } => steam_reviews::read(path).map(|(l, _)| l),
    }
}

pub fn read_items(src: &ItemSource) -> Result<RawItemTable> {
    match src {
        ItemSource::IdMapLookup { id_map, lookup } => id_map_lookup::read(id_map, lookup),
        ItemSource::Recbole { path, fields } => recbole::read_items(path, fields),
        ItemSource::SteamGames { path } => steam_games::read(path).map(|(t, _)| t),
        ItemSource::AmazonMeta { path } => amazon::read_meta(path),
        ItemSource::Movielens { path } => movielens::read_movies(path),
    }
}

//! Solar schedules: the next sunrise, sunset, dawn, dusk or solar noon after an instant at a
//! place, as Celery computes them with `ephem` (observer at elevation 0 with pressure 0, i.e.
//! no refraction model; rising and setting of the upper limb at −0:34 for sunrise/sunset, of
//! the centre at −6/−12/−18° for the dawns and dusks; meridian transit for solar noon).
//!
//! The sun's apparent position comes from the low-precision formulas of Meeus, *Astronomical
//! Algorithms* ch. 25 (about 0.01°), which puts events within seconds of ephem's at
//! non-polar latitudes. Events are found by stepping forward and bisecting. When the sun does
//! not cross the altitude within a year (polar day or night), there is no next event.

use std::f64::consts::PI;

use chrono::{DateTime, TimeZone, Utc};

/// One of django-celery-beat's solar events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolarEvent {
    /// Sun's centre 18° below the horizon, rising.
    DawnAstronomical,
    /// 12°, rising.
    DawnNautical,
    /// 6°, rising.
    DawnCivil,
    /// Upper limb at −0:34, rising.
    Sunrise,
    /// Meridian transit.
    SolarNoon,
    /// Upper limb at −0:34, setting.
    Sunset,
    /// 6°, setting.
    DuskCivil,
    /// 12°, setting.
    DuskNautical,
    /// 18°, setting.
    DuskAstronomical,
}

impl SolarEvent {
    /// Every event name django-celery-beat accepts.
    pub const NAMES: [&'static str; 9] = [
        "dawn_astronomical",
        "dawn_civil",
        "dawn_nautical",
        "dusk_astronomical",
        "dusk_civil",
        "dusk_nautical",
        "solar_noon",
        "sunrise",
        "sunset",
    ];

    /// Parse a column value.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "dawn_astronomical" => SolarEvent::DawnAstronomical,
            "dawn_nautical" => SolarEvent::DawnNautical,
            "dawn_civil" => SolarEvent::DawnCivil,
            "sunrise" => SolarEvent::Sunrise,
            "solar_noon" => SolarEvent::SolarNoon,
            "sunset" => SolarEvent::Sunset,
            "dusk_civil" => SolarEvent::DuskCivil,
            "dusk_nautical" => SolarEvent::DuskNautical,
            "dusk_astronomical" => SolarEvent::DuskAstronomical,
            _ => return None,
        })
    }

    /// The column value.
    pub fn name(self) -> &'static str {
        match self {
            SolarEvent::DawnAstronomical => "dawn_astronomical",
            SolarEvent::DawnNautical => "dawn_nautical",
            SolarEvent::DawnCivil => "dawn_civil",
            SolarEvent::Sunrise => "sunrise",
            SolarEvent::SolarNoon => "solar_noon",
            SolarEvent::Sunset => "sunset",
            SolarEvent::DuskCivil => "dusk_civil",
            SolarEvent::DuskNautical => "dusk_nautical",
            SolarEvent::DuskAstronomical => "dusk_astronomical",
        }
    }

    /// (horizon in degrees, rising?, whether the centre (not the upper limb) counts).
    fn horizon(self) -> Option<(f64, bool, bool)> {
        let limb = -34.0 / 60.0;
        Some(match self {
            SolarEvent::DawnAstronomical => (-18.0, true, true),
            SolarEvent::DawnNautical => (-12.0, true, true),
            SolarEvent::DawnCivil => (-6.0, true, true),
            SolarEvent::Sunrise => (limb, true, false),
            SolarEvent::SolarNoon => return None,
            SolarEvent::Sunset => (limb, false, false),
            SolarEvent::DuskCivil => (-6.0, false, true),
            SolarEvent::DuskNautical => (-12.0, false, true),
            SolarEvent::DuskAstronomical => (-18.0, false, true),
        })
    }
}

/// A solar schedule: an event at a place.
#[derive(Debug, Clone, PartialEq)]
pub struct Solar {
    /// The event.
    pub event: SolarEvent,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// Apparent geocentric right ascension, declination (radians), Greenwich apparent sidereal
/// time (radians) and semi-diameter (degrees) of the sun at Unix time `t` (seconds).
fn sun(t: f64) -> (f64, f64, f64, f64) {
    let jd = t / 86400.0 + 2_440_587.5;
    let d = jd - 2_451_545.0;
    let tc = d / 36525.0;
    let rad = PI / 180.0;
    let l0 = 280.46646 + 36000.76983 * tc + 0.0003032 * tc * tc;
    let m = 357.52911 + 35999.05029 * tc - 0.0001537 * tc * tc;
    let e = 0.016708634 - 0.000042037 * tc - 0.0000001267 * tc * tc;
    let mr = m * rad;
    let c = (1.914602 - 0.004817 * tc - 0.000014 * tc * tc) * mr.sin()
        + (0.019993 - 0.000101 * tc) * (2.0 * mr).sin()
        + 0.000289 * (3.0 * mr).sin();
    let true_long = l0 + c;
    let nu = (m + c) * rad;
    let r = 1.000001018 * (1.0 - e * e) / (1.0 + e * nu.cos());
    let omega = (125.04 - 1934.136 * tc) * rad;
    let lambda = (true_long - 0.00569 - 0.00478 * omega.sin()) * rad;
    let eps0 = 23.0 + 26.0 / 60.0 + 21.448 / 3600.0
        - (46.8150 * tc + 0.00059 * tc * tc - 0.001813 * tc * tc * tc) / 3600.0;
    let eps = (eps0 + 0.00256 * omega.cos()) * rad;
    let ra = (eps.cos() * lambda.sin()).atan2(lambda.cos());
    let dec = (eps.sin() * lambda.sin()).asin();
    let gmst =
        280.46061837 + 360.98564736629 * d + 0.000387933 * tc * tc - tc * tc * tc / 38_710_000.0;
    let dpsi = -0.004778 * omega.sin() - 0.000367 * (2.0 * l0 * rad).sin();
    let gast = (gmst + dpsi * eps.cos()) * rad;
    (ra, dec, gast, 0.266563 / r)
}

/// (altitude of the centre in degrees, local hour angle in radians within (−π, π]).
fn position(t: f64, lat: f64, lon: f64) -> (f64, f64, f64) {
    let (ra, dec, gast, sd) = sun(t);
    let rad = PI / 180.0;
    let mut h = (gast + lon * rad - ra) % (2.0 * PI);
    if h > PI {
        h -= 2.0 * PI;
    } else if h <= -PI {
        h += 2.0 * PI;
    }
    let phi = lat * rad;
    let alt = (phi.sin() * dec.sin() + phi.cos() * dec.cos() * h.cos()).asin() / rad;
    (alt, h, sd)
}

/// Step of the forward search, seconds.
const STEP: f64 = 300.0;
/// How far ahead an event is looked for, seconds (Celery's ephem search stops after a year).
const HORIZON: f64 = 367.0 * 86400.0;

impl Solar {
    /// A solar schedule; `None` for an unknown event name.
    pub fn new(event: &str, latitude: f64, longitude: f64) -> Option<Self> {
        Some(Solar {
            event: SolarEvent::parse(event)?,
            latitude,
            longitude,
        })
    }

    /// g(t) whose sign change (− to +) marks the event.
    fn g(&self, t: f64) -> f64 {
        let (alt, h, sd) = position(t, self.latitude, self.longitude);
        match self.event.horizon() {
            None => h, // transit: hour angle crosses 0 upwards
            Some((horizon, rising, centre)) => {
                let target = if centre { horizon } else { horizon - sd };
                let f = alt - target;
                if rising { f } else { -f }
            }
        }
    }

    /// The first event strictly after `after`; `None` if there is none within a year.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t0 = after.timestamp() as f64 + f64::from(after.timestamp_subsec_micros()) / 1e6;
        let transit = self.event.horizon().is_none();
        let mut a = t0;
        let mut ga = self.g(a);
        while a < t0 + HORIZON {
            let b = a + STEP;
            let gb = self.g(b);
            // For transit, a jump of the hour angle from +π to −π is the anti-transit.
            let crossing = ga < 0.0 && gb >= 0.0 && (!transit || (gb - ga) < PI);
            if crossing {
                let (mut lo, mut hi) = (a, b);
                while hi - lo > 0.01 {
                    let mid = (lo + hi) / 2.0;
                    if self.g(mid) < 0.0 {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                if hi > t0 {
                    let secs = hi.floor();
                    let nanos = ((hi - secs) * 1e9) as u32;
                    return Utc.timestamp_opt(secs as i64, nanos).single();
                }
            }
            a = b;
            ga = gb;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sunrise_and_noon_in_new_york() {
        // ephem (pressure 0): New York 2024-06-21 sunrise 09:24:2x UTC, transit 16:57.
        let after = Utc.with_ymd_and_hms(2024, 6, 21, 0, 0, 0).unwrap();
        let rise = Solar::new("sunrise", 40.7128, -74.0060)
            .unwrap()
            .next_after(after)
            .unwrap();
        let expect = Utc.with_ymd_and_hms(2024, 6, 21, 9, 24, 0).unwrap();
        assert!((rise - expect).num_seconds().abs() < 90, "{rise}");
        let noon = Solar::new("solar_noon", 40.7128, -74.0060)
            .unwrap()
            .next_after(after)
            .unwrap();
        let expect = Utc.with_ymd_and_hms(2024, 6, 21, 16, 57, 30).unwrap();
        assert!((noon - expect).num_seconds().abs() < 90, "{noon}");
        // Polar night: no sunrise at 89°N in December for months; within a year there is one.
        let polar = Solar::new("sunrise", 89.0, 0.0).unwrap();
        let dec = Utc.with_ymd_and_hms(2024, 12, 1, 0, 0, 0).unwrap();
        let next = polar.next_after(dec).unwrap();
        assert!(next > Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap());
    }
}

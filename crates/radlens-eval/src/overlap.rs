//! Overlap metrics between binary masks.

/// Intersection and sizes of two masks.
fn counts(a: &[bool], b: &[bool]) -> (usize, usize, usize) {
    assert_eq!(a.len(), b.len(), "masks differ in size");
    a.iter().zip(b).fold((0, 0, 0), |(i, na, nb), (&x, &y)| {
        (i + (x && y) as usize, na + x as usize, nb + y as usize)
    })
}

/// Dice = 2|A∩B| / (|A| + |B|); 1 when both masks are empty.
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    let (i, na, nb) = counts(a, b);
    if na + nb == 0 {
        1.0
    } else {
        2.0 * i as f64 / (na + nb) as f64
    }
}

/// IoU = |A∩B| / |A∪B|; 1 when both masks are empty.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (i, na, nb) = counts(a, b);
    let union = na + nb - i;
    if union == 0 {
        1.0
    } else {
        i as f64 / union as f64
    }
}

/// Per-class boolean mask from a label map.
pub fn class_mask(labels: &[u8], class: u8) -> Vec<bool> {
    labels.iter().map(|&l| l == class).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let a = [true, true, true, false, false];
        let b = [false, true, true, true, false];
        assert!((dice(&a, &b) - 2.0 * 2.0 / 6.0).abs() < 1e-12);
        assert!((iou(&a, &b) - 2.0 / 4.0).abs() < 1e-12);
        assert_eq!(dice(&[false; 3], &[false; 3]), 1.0);
        assert_eq!(iou(&[false; 3], &[true, false, false]), 0.0);
    }
}

"""In-the-wild 2D keypoints: readers of the detectors' files (readers), their joint layouts and
conversions (layouts), and one person's gap-filled track (tracks)."""

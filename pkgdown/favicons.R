# Writes the site's icons into pkgdown/favicon/ from man/figures/logo.svg
# (`make site`). pkgdown would otherwise send the logo to
# realfavicongenerator.net to make them, which fails offline; these are the
# files its page template links to.
sizes <- c("favicon-16x16.png" = 16, "favicon-32x32.png" = 32,
           "apple-touch-icon.png" = 180, "apple-touch-icon-120x120.png" = 120,
           "apple-touch-icon-76x76.png" = 76, "apple-touch-icon-60x60.png" = 60)
dir.create(file.path("pkgdown", "favicon"), showWarnings = FALSE)
for (file in names(sizes))
  rsvg::rsvg_png(file.path("man", "figures", "logo.svg"),
                 file.path("pkgdown", "favicon", file),
                 width = sizes[[file]], height = sizes[[file]])

module github.com/myim/myim

go 1.26.8

require github.com/valyala/bytebufferpool v1.0.0

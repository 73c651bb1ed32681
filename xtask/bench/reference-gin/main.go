// The tutorial's Items API (Go + Gin, in-memory store), reconstructed from its
// description, for same-run benchmarks (`cargo xtask bench http --reference gin`).
package main

import (
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

type Item struct {
	ID          string    `json:"id"`
	Name        string    `json:"name" binding:"required"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

type store struct {
	mu    sync.RWMutex
	items map[string]Item
}

func main() {
	gin.SetMode(gin.ReleaseMode)
	s := &store{items: map[string]Item{}}
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ready"}) })
	r.GET("/api/v1/items", func(c *gin.Context) {
		s.mu.RLock()
		list := make([]Item, 0, len(s.items))
		for _, it := range s.items {
			list = append(list, it)
		}
		s.mu.RUnlock()
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		c.JSON(http.StatusOK, list)
	})
	r.GET("/api/v1/items/:id", func(c *gin.Context) {
		s.mu.RLock()
		it, ok := s.items[c.Param("id")]
		s.mu.RUnlock()
		if !ok {
			c.JSON(http.StatusNotFound, gin.H{"error": "item not found"})
			return
		}
		c.JSON(http.StatusOK, it)
	})
	r.POST("/api/v1/items", func(c *gin.Context) {
		var it Item
		if err := c.ShouldBindJSON(&it); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		it.ID = uuid.NewString()
		it.CreatedAt = time.Now().UTC()
		s.mu.Lock()
		s.items[it.ID] = it
		s.mu.Unlock()
		c.JSON(http.StatusCreated, it)
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	r.Run(":" + port)
}
